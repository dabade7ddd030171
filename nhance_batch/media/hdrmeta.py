"""HDR signalling: what an HDR source says about itself, and what its output says.

* HDR10 static metadata (SMPTE ST 2086 mastering display colour volume, and the content
  light level MaxCLL/MaxFALL) is read from the first decoded frame's side data (HEVC and AV1
  decoders export their SEI / metadata OBUs there) and written into the output's bitstream
  through the encoder: ``x265-params`` ``master-display`` and ``max-cll`` for libx265,
  ``svtav1-params`` ``mastering-display`` and ``content-light`` for libsvtav1. Other encoders
  cannot carry it (PyAV cannot attach side data to a stream or a frame it encodes).
* Dolby Vision (a ``dvh1``/``dvhe``/``dav1`` sample entry, or an RPU on the first frame):
  the RPU describes the original pixels, so it cannot be kept; the output is the base
  layer's own format (HLG for profile 8.4, HDR10 for 8.1), and :func:`hdr_note` says so.
* ``hdr="sdr"``: :func:`output_info` is the source as an SDR BT.709 8-bit video, what the
  encoder then writes and tags.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

PQ, HLG = 16, 18  # AVColorTransferCharacteristic
BT709 = 1  # AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace
LIMITED_RANGE = 1
DOLBY_VISION_TAGS = frozenset({"dvh1", "dvhe", "dav1", "dvav", "dva1"})

_CHROMA_UNIT = 50000  # ST 2086 / x265: chromaticity in units of 0.00002
_LUMA_UNIT = 10000  # luminance in units of 0.0001 cd/m2


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata and Dolby Vision presence of a video stream.

    Attributes:
        primaries: mastering display primaries ``((Rx, Ry), (Gx, Gy), (Bx, By))`` in CIE xy,
            or None.
        white_point: its white ``(x, y)``, or None.
        luminance: its ``(min, max)`` luminance in cd/m2, or None.
        max_cll, max_fall: content light level in cd/m2 (None when absent).
        dolby_vision: the stream carries Dolby Vision (its RPU is not kept).
    """

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None
    white_point: tuple[Fraction, Fraction] | None = None
    luminance: tuple[Fraction, Fraction] | None = None
    max_cll: int | None = None
    max_fall: int | None = None
    dolby_vision: bool = False

    @property
    def has_hdr10(self) -> bool:
        return self.primaries is not None or self.max_cll is not None


def _rationals(raw: bytes, count: int) -> list[Fraction]:
    values = struct.unpack(f"={2 * count}i", raw[:8 * count])
    return [Fraction(n, d) if d else Fraction(0) for n, d in zip(values[::2], values[1::2])]


def read_hdr_metadata(codec_tag: str | None, frame: Any) -> HdrMetadata | None:
    """The stream's HDR metadata from its sample entry tag and its first decoded ``frame``
    (None when it has none)."""
    values: dict[str, Any] = {"dolby_vision": (codec_tag or "") in DOLBY_VISION_TAGS}
    if frame is not None:
        from av.sidedata.sidedata import Type

        for side in frame.side_data:
            raw = bytes(side)
            if side.type == Type.MASTERING_DISPLAY_METADATA and len(raw) >= 88:
                r = _rationals(raw, 10)
                has_primaries, has_luminance = struct.unpack("=2i", raw[80:88])
                if has_primaries:
                    values["primaries"] = ((r[0], r[1]), (r[2], r[3]), (r[4], r[5]))
                    values["white_point"] = (r[6], r[7])
                if has_luminance:
                    values["luminance"] = (r[8], r[9])
            elif side.type == Type.CONTENT_LIGHT_LEVEL and len(raw) >= 8:
                values["max_cll"], values["max_fall"] = struct.unpack("=2I", raw[:8])
            elif side.type in (Type.DOVI_RPU_BUFFER, Type.DOVI_METADATA):
                values["dolby_vision"] = True
    found = HdrMetadata(**values)
    return found if found.has_hdr10 or found.dolby_vision else None


def output_info(info: Any, hdr: str) -> Any:
    """The video the encoder writes for source ``info``: the source itself, or for an HDR
    source with ``hdr="sdr"`` an 8-bit BT.709 video without HDR metadata."""
    if hdr != "sdr" or info.color.transfer not in (PQ, HLG):
        return info
    sdr = replace(info.color, primaries=BT709, transfer=BT709, matrix=BT709,
                  range=LIMITED_RANGE)
    return replace(info, color=sdr, bit_depth=8, pix_fmt="yuv420p", hdr_metadata=None)


def encoder_hdr_options(codec: str, meta: HdrMetadata | None) -> dict[str, str]:
    """Encoder options that write ``meta``'s HDR10 metadata (empty where ``codec`` cannot)."""
    if meta is None or not meta.has_hdr10:
        return {}
    if codec == "libx265":
        params = ["hdr10=1"]
        if meta.primaries and meta.luminance:
            params.append(f"master-display={_x265_master_display(meta)}")
        if meta.max_cll is not None:
            params.append(f"max-cll={meta.max_cll},{meta.max_fall or 0}")
        return {"x265-params": ":".join(params)}
    if codec == "libsvtav1":
        params = []
        if meta.primaries and meta.luminance:
            params.append(f"mastering-display={_svt_master_display(meta)}")
        if meta.max_cll is not None:
            params.append(f"content-light={meta.max_cll},{meta.max_fall or 0}")
        return {"svtav1-params": ":".join(params)}
    return {}


def _x265_master_display(meta: HdrMetadata) -> str:
    (r, g, b), w = meta.primaries, meta.white_point

    def xy(p):
        return f"({round(p[0] * _CHROMA_UNIT)},{round(p[1] * _CHROMA_UNIT)})"

    low, high = meta.luminance
    return (f"G{xy(g)}B{xy(b)}R{xy(r)}WP{xy(w)}"
            f"L({round(high * _LUMA_UNIT)},{round(low * _LUMA_UNIT)})")


def _svt_master_display(meta: HdrMetadata) -> str:
    (r, g, b), w = meta.primaries, meta.white_point

    def xy(p):
        return f"({float(p[0]):.5f},{float(p[1]):.5f})"

    low, high = meta.luminance
    return f"G{xy(g)}B{xy(b)}R{xy(r)}WP{xy(w)}L({float(high):.4f},{float(low):.4f})"


def hdr_note(info: Any, hdr: str) -> str | None:
    """What to tell about an HDR source's output: Dolby Vision's RPU dropped (None when
    there is nothing to say)."""
    meta = getattr(info, "hdr_metadata", None)
    if meta is None or not meta.dolby_vision:
        return None
    if hdr == "sdr":
        kept = "an SDR BT.709 rendition"
    else:
        kept = {HLG: "HLG, as profile 8.4's base layer", PQ: "HDR10, as profile 8.1's base layer"}
        kept = kept.get(info.color.transfer, "the base layer's own format")
    return f"Dolby Vision metadata (RPU) cannot be kept: the output is {kept}"
