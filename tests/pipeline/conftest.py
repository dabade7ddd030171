"""Fixtures for pipeline tests: a local Ray, made-up clips, broken files, output checks."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.media.makemedia import make_video


@pytest.fixture(scope="session")
def local_ray():
    """One embedded local Ray for the in-process pipeline tests."""
    import ray

    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False, object_store_memory=512 << 20,
             log_to_driver=False)
    yield
    ray.shutdown()


def make_broken(folder: Path, good: Path) -> dict[str, Path]:
    """Broken inputs: empty, text, truncated MP4, and an HLS playlist disguised as .mp4."""
    folder.mkdir(parents=True, exist_ok=True)
    broken = {"empty": folder / "empty.mp4", "text": folder / "notes.mp4",
              "truncated": folder / "truncated.mp4", "playlist": folder / "playlist.mp4"}
    broken["empty"].write_bytes(b"")
    broken["text"].write_text("these are my holiday notes, not a video\n")
    data = good.read_bytes()
    broken["truncated"].write_bytes(data[: len(data) // 2])
    broken["playlist"].write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n" + str(good.resolve()) +
        "\n#EXT-X-ENDLIST\n")
    return broken


def frames_and_times(path: Path):
    """(decoded RGB frames, presentation times as Fractions of a second) of a video."""
    from nhance_batch.media import decode_all, probe

    info = probe(path)
    decoded = decode_all(path, info)
    return decoded.frames, [p * info.time_base for p in info.pts]


def copy_clip(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Good test clips (tiny frames) covering audio, VFR, rotation and odd sizes."""
    folder = tmp_path_factory.mktemp("pipeline_clips")
    return {
        "audio": make_video(folder / "audio.mp4", width=64, height=48, frames=16, gop=6,
                            audio_tracks=1),
        "vfr": make_video(folder / "vfr.mkv", width=64, height=48, frames=12,
                          time_base=Fraction(1, 1000), gop=4,
                          vfr_pts=[0, 40, 80, 200, 210, 220, 400, 433, 466, 500, 700, 710],
                          audio_tracks=2, subtitle=True),
        "rotated": make_video(folder / "rotated.mp4", width=64, height=48, frames=10, gop=5,
                              rotation=90, subtitle=True),
        "odd": make_video(folder / "odd.mp4", width=35, height=27, frames=9, gop=4,
                          pix_fmt="yuv444p"),
        "plain": make_video(folder / "plain.mp4", width=64, height=48, frames=24, gop=8),
    }


def assert_plays_like(source: Path, output: Path) -> None:
    """Output has the source's frame count, timestamps, audio/subtitle packets, rotation."""
    from nhance_batch.media import probe
    from tests.media.conftest import packet_bytes

    src, out = probe(source), probe(output)
    assert out.frame_count == src.frame_count
    assert [p * out.time_base for p in out.pts] == [p * src.time_base for p in src.pts]
    assert (out.width, out.height) == (src.width, src.height)
    assert out.rotation == src.rotation
    assert packet_bytes(output) == packet_bytes(source)
    assert [s.kind for s in out.other_streams] == [s.kind for s in src.other_streams]


def enhance_directly(frames: np.ndarray, batch_size: int = 0) -> np.ndarray:
    """The enhancer on ``frames`` with the pipeline's defaults (0: the autotuned batch, the
    same cached decision the pipeline's actors read)."""
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.enhancer import Enhancer

    return Enhancer(ModelConfig(batch_size=batch_size))(frames)
