"""The package's table of measured GPU rates (``gpu_rates.toml``), each with its source.

Enhancer rates are frames per second at a measured frame size; for other sizes the rate per
megapixel is interpolated linearly in the frame's megapixels between the measured sizes (and
held at the nearest one outside them): DPED is fully convolutional, so its cost is per pixel,
and the measured H100 rates per megapixel differ by 1% between 720p and 1080p.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class EnhancerRate:
    """DPED on one GPU of ``kind`` at ``width x height`` in ``precision``: ``fps``."""

    kind: str
    device: str
    precision: str
    width: int
    height: int
    fps: float
    source: str

    @property
    def mpx_s(self) -> float:
        return self.fps * self.width * self.height / 1e6


@dataclass(frozen=True)
class EncoderRate:
    """What the CPUs of one node of ``kind`` encode together, with these encoder settings."""

    kind: str
    codec: str
    crf: int
    preset: str
    cores: int
    width: int
    height: int
    fps: float
    source: str

    @property
    def mpx_s(self) -> float:
        return self.fps * self.width * self.height / 1e6


@dataclass(frozen=True)
class RateTable:
    enhancer: tuple[EnhancerRate, ...]
    encoder: tuple[EncoderRate, ...]

    def kinds(self) -> list[str]:
        """GPU kinds with an enhancer rate, in table order."""
        return list(dict.fromkeys(rate.kind for rate in self.enhancer))

    def enhancer_rate(self, kind: str, precision: str, width: int,
                      height: int) -> tuple[float, list[EnhancerRate]] | None:
        """Megapixels per second of one ``kind`` GPU for ``width x height`` frames, and the
        measured rows it came from; None when nothing was measured for that precision."""
        rows = sorted((r for r in self.enhancer if r.kind == kind and r.precision == precision),
                      key=lambda r: r.width * r.height)
        if not rows:
            return None
        mpx = width * height / 1e6
        sizes = [r.width * r.height / 1e6 for r in rows]
        if mpx <= sizes[0] or len(rows) == 1:
            return rows[0].mpx_s, [rows[0]]
        if mpx >= sizes[-1]:
            return rows[-1].mpx_s, [rows[-1]]
        for (low, a), (high, b) in zip(zip(sizes, rows), zip(sizes[1:], rows[1:])):
            if low <= mpx <= high:
                share = (mpx - low) / (high - low)
                return a.mpx_s + share * (b.mpx_s - a.mpx_s), [a, b]
        return rows[-1].mpx_s, [rows[-1]]  # unreachable: the sizes cover mpx

    def encoder_rate(self, kind: str, codec: str, crf: int, preset: str) -> EncoderRate | None:
        """The measured encode rate of a ``kind`` node with exactly these settings, if any."""
        for rate in self.encoder:
            if (rate.kind, rate.codec, rate.crf, rate.preset) == (kind, codec, crf, preset):
                return rate
        return None


@lru_cache(maxsize=1)
def load_rates() -> RateTable:
    """The table shipped in the package."""
    text = resources.files("nhance_batch.estimate").joinpath("gpu_rates.toml").read_text("utf-8")
    return parse_rates(text)


def parse_rates(text: str) -> RateTable:
    """A rate table from TOML text (see ``gpu_rates.toml``).

    Raises:
        ValueError: a row lacks a field, has an unknown one, or a rate is not positive.
    """
    data = tomllib.loads(text)
    try:
        enhancer = tuple(EnhancerRate(**row) for row in data.get("enhancer", []))
        encoder = tuple(EncoderRate(**row) for row in data.get("encoder", []))
    except TypeError as exc:
        raise ValueError(f"bad rate table row: {exc}") from None
    for row in (*enhancer, *encoder):
        if row.fps <= 0 or row.width <= 0 or row.height <= 0 or not row.source.strip():
            raise ValueError(f"bad rate table row (rates and sizes > 0, a source): {row}")
    return RateTable(enhancer, encoder)
