"""Small HDR test videos (HEVC 10-bit, PQ or HLG, BT.2020, with HDR10 metadata), made with
PyAV and colour-science (an independent reference for the transfers).

The picture is :func:`tests.media.makemedia.picture` taken as a BT.709 SDR photo, put at the
HDR reference white of BT.2408 (203 cd/m2), plus a highlight patch at ``HIGHLIGHT_NITS``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from tests.media.makemedia import picture

PQ, HLG, BT2020, BT2020_NCL, LIMITED = 16, 18, 9, 9, 1
HIGHLIGHT_NITS = 800.0
PATCH = (slice(0, 8), slice(0, 8))  # where the highlight is
#: What the clips are tagged with (x265 units: chromaticity 1/50000, luminance 1/10000 cd/m2).
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MAX_CLL = (1000, 400)


def sdr_light(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the test pattern as linear BT.709 light in [0, 1] (BT.1886)."""
    return (picture(index, width, height).astype(np.float64) / 255) ** 2.4


def hdr_codes(light_709: np.ndarray, transfer: int, highlight: bool = True) -> np.ndarray:
    """Linear BT.709 light (1.0 = reference white) as full-scale HDR code values in [0, 1]
    of ``transfer``, BT.2020 primaries, with the highlight patch when ``highlight``."""
    import colour

    to_2020 = colour.matrix_RGB_to_RGB(colour.RGB_COLOURSPACES["ITU-R BT.709"],
                                       colour.RGB_COLOURSPACES["ITU-R BT.2020"])
    nits = light_709 @ to_2020.T * 203.0
    if highlight:
        nits[PATCH] = HIGHLIGHT_NITS
    if transfer == PQ:
        return colour.models.eotf_inverse_ST2084(nits)
    scene = colour.models.ootf_inverse_BT2100_HLG(nits, L_W=1000, L_B=0)
    return colour.models.oetf_BT2100_HLG(np.clip(scene, 0, 1))


def make_hdr_video(path, *, transfer: int, width: int = 64, height: int = 48,
                   frames: int = 8, rate: Fraction = Fraction(25)) -> Path:
    """Write an HEVC ``yuv420p10le`` clip tagged BT.2020 / ``transfer`` / limited range,
    with ``MASTER_DISPLAY`` and ``MAX_CLL`` in its SEI; returns the path."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = (f"log-level=error:keyint=4:min-keyint=4:master-display={MASTER_DISPLAY}:"
              f"max-cll={MAX_CLL[0]},{MAX_CLL[1]}")
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx265", rate=rate,
                               options={"preset": "ultrafast", "x265-params": params})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p10le"
        video.time_base = video.codec_context.time_base = Fraction(1) / rate
        cc = video.codec_context
        cc.color_primaries, cc.color_trc = BT2020, transfer
        cc.colorspace, cc.color_range = BT2020_NCL, LIMITED
        for i in range(frames):
            codes = hdr_codes(sdr_light(i, width, height), transfer)
            rgb = np.round(np.clip(codes, 0, 1) * 65535).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(
                format="yuv420p10le", dst_colorspace=BT2020_NCL, dst_color_range="MPEG")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def retag(src, dest, codec_tag: str) -> Path:
    """``src``'s video packets remuxed into MP4 ``dest`` under sample entry ``codec_tag``
    (``dvh1``: how Dolby Vision files announce themselves)."""
    import av

    dest = Path(dest)
    with av.open(str(src)) as inp, av.open(str(dest), "w", format="mp4") as out:
        video = inp.streams.video[0]
        stream = out.add_stream_from_template(video)
        stream.codec_tag = codec_tag
        for packet in inp.demux(video):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dest
