#!/usr/bin/env python
"""Scaling benchmark (not a timed test): the same job with 1 and with 2 enhancer actors, one
math thread each, on this machine; prints the throughput ratio and where the time goes.

Each run is a real ``nhance-batch run`` (local Ray) over the same synthetic clips, with
``--workers N --threads 1``. Throughput is output frames over the driver's own time (the
summary's ``seconds``: Ray start-up and actor creation excluded, as they do not scale with the
job); the whole command's wall time is printed too. Per stage: frames per second of stage time
(decode and enhance count context frames) and the stage's total seconds, summed over chunks.

    python bench/scaling.py [--size 128x96] [--clips 4] [--frames 48] [--out scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_job(inp: Path, out: Path, workers: int, chunk: int) -> dict:
    summary = out.with_suffix(".json")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nhance_batch", "run", str(inp), str(out), "--workers",
         str(workers), "--threads", "1", "--chunk-frames", str(chunk), "--summary-json",
         str(summary)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run with {workers} worker(s) failed:\n{proc.stderr[-3000:]}")
    report = json.loads(summary.read_text())
    return {"workers": workers, "frames": report["frames"], "driver_s": report["seconds"],
            "wall_s": wall, "fps": report["frames"] / report["seconds"],
            "stage_fps": report["stage_fps"], "chunks": report["chunks_computed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="128x96", help="WxH of the clips [128x96]")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48, help="frames per clip [48]")
    parser.add_argument("--chunk-frames", type=int, default=16)
    parser.add_argument("--out", default=None, help="write JSON here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.environ.setdefault("NHANCE_MODELS", str(REPO.parent / "shared" / "models" / "dped"))

    from tests.media.makemedia import make_video

    with tempfile.TemporaryDirectory(prefix="nhance-scaling-") as tmp:
        inp = Path(tmp) / "in"
        for i in range(args.clips):
            make_video(inp / f"clip{i}.mp4", width=width, height=height, frames=args.frames,
                       gop=12, audio_tracks=1)
        results = [run_job(inp, Path(tmp) / f"out{n}", n, args.chunk_frames) for n in (1, 2)]
    one, two = results
    ratio = two["fps"] / one["fps"]
    print("| actors (1 thread each) | frames | driver s | wall s | fps | decode fps | "
          "enhance fps | encode fps |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["stage_fps"]
        print(f"| {r['workers']} | {r['frames']} | {r['driver_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['fps']:.2f} | {s['decode']:.1f} | {s['enhance']:.2f} | {s['encode']:.1f} |")
    print(f"\nthroughput 2 actors / 1 actor: {ratio:.3f} (driver time); "
          f"{one['wall_s'] / two['wall_s']:.3f} (whole command)")
    print("enhance fps is per actor-second: each actor's own rate, so it stays about the same "
          "while the job's fps doubles")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
