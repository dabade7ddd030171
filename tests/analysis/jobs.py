"""A made-up finished job (manifest and files, no model run) for the job-level commands."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from tests.analysis.helpers import read_frames, write_video
from tests.media.makemedia import make_video


def make_job(root: Path) -> dict:
    """INPUT with a good clip (in a subfolder) and a broken one; OUTPUT with the good clip's
    'enhanced' version (its frames brightened, FFV1), a manifest saying one done and one
    failed, and a run summary."""
    from nhance_batch.state.manifest import ChunkRecord, Manifest, VideoRecord, save_manifest

    inputs, output = root / "in", root / "out"
    source = make_video(inputs / "trip" / "day.mp4", width=64, height=48, frames=12, gop=4,
                        audio_tracks=1)
    broken = inputs / "broken.mp4"
    broken.write_bytes(b"not a video")
    frames, times = read_frames(source)
    enhanced = write_video(output / "trip" / "day.mkv",
                           [np.clip(f.astype(np.int16) + 40, 0, 255).astype(np.uint8)
                            for f in frames],
                           [round(t * 1000) for t in times], time_base=Fraction(1, 1000))
    rng = np.random.default_rng(3)
    chunks = []
    for index, (start, end) in enumerate(((0, 6), (6, 12))):
        before = rng.normal(0.3, 0.02, size=(end - start) * 3)
        chunks.append(ChunkRecord(index=index, start=start, end=end, ctx_start=max(0, start - 3),
                                  ctx_end=min(12, end + 3), status="done", run=1, attempts=1,
                                  decode_s=0.05, enhance_s=0.6, encode_s=0.04,
                                  gains_before=before.tolist(),
                                  gains_after=np.full_like(before, 0.3).tolist()))
    manifest = Manifest(job={"model": "iphone"}, videos=[
        VideoRecord(input=str(broken), relative="broken.mp4", status="failed",
                    error=f"{broken}: not a readable media file (Invalid data)"),
        VideoRecord(input=str(source), relative="trip/day.mp4", output=str(enhanced),
                    status="done", frames=12, added_flicker=0.001, model_flicker=0.02,
                    chunks=chunks),
    ])
    manifest.new_run("host", 1)
    save_manifest(manifest, str(output / "_nhance" / "manifest.parquet"))
    (output / "_nhance" / "summary.json").write_text(json.dumps({
        "run": 1, "progress": [[1.5, 6], [2.7, 12]],
        "stage_fps": {"decode": 240.0, "enhance": 20.0, "encode": 300.0}}))
    return {"input": inputs, "output": output, "source": source, "enhanced": enhanced,
            "broken": broken}
