#!/usr/bin/env python
"""Scaling benchmark (not a timed test): the same job with 1 and with 2 enhancer actors, one
math thread each, on this machine; prints the throughput ratios and where the time goes.

Each run is a real ``nhance-batch run`` (embedded local Ray) over the same synthetic clips,
with ``--workers N --threads 1``; rounds alternate 1, 2, 1, 2... so that a noisy neighbour
hits both. Three throughputs per run, each as output frames per second:

* steady: the slope of the job's progress curve (the summary's ``progress``: frames committed
  against time) between 20% and 80% of its frames, fitted by least squares: the rate once the
  pool is running, without start-up and tail;
* job: frames over the driver's time (the summary's ``seconds``: actors starting and loading
  the model, first compile, work, tail);
* command: frames over the whole command (Python and Ray start-up and shutdown too).

Per stage: frames per second of stage time (decode and enhance count context frames), summed
over chunks, and the seconds until the first chunk was committed.

    python bench/scaling.py [--size 128x96] [--clips 6] [--frames 64] [--rounds 2] [--out F]
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


def steady_fps(progress: list, total: int, lo: float = 0.2, hi: float = 0.8) -> float:
    """Least-squares slope of frames committed against time, over points in [lo, hi] of total."""
    import numpy as np

    points = [(t, f) for t, f in progress if lo * total <= f <= hi * total]
    if len(points) < 3:
        return float("nan")
    t, f = np.asarray(points, dtype=float).T
    return float(np.polyfit(t, f, 1)[0])


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
    frames = report["frames"]
    progress = report["progress"]
    return {"workers": workers, "frames": frames, "driver_s": report["seconds"],
            "wall_s": wall, "steady_fps": steady_fps(progress, frames),
            "job_fps": frames / report["seconds"], "command_fps": frames / wall,
            "first_chunk_s": progress[0][0] if progress else float("nan"),
            "stage_fps": report["stage_fps"], "chunks": report["chunks_computed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="128x96", help="WxH of the clips [128x96]")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=64, help="frames per clip [64]")
    parser.add_argument("--chunk-frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (1 then 2 actors)")
    parser.add_argument("--out", default=None, help="write JSON here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.environ.setdefault("NHANCE_MODELS", str(REPO.parent / "shared" / "models" / "dped"))

    import statistics

    from tests.media.makemedia import make_video

    results = []
    with tempfile.TemporaryDirectory(prefix="nhance-scaling-") as tmp:
        inp = Path(tmp) / "in"
        for i in range(args.clips):
            make_video(inp / f"clip{i}.mp4", width=width, height=height, frames=args.frames,
                       gop=12, audio_tracks=1)
        for r in range(args.rounds):
            for n in (1, 2):
                res = run_job(inp, Path(tmp) / f"out{r}_{n}", n, args.chunk_frames)
                res["round"] = r + 1
                results.append(res)
                print(f"round {r + 1}, {n} actor(s): steady {res['steady_fps']:.2f} fps, job "
                      f"{res['job_fps']:.2f}, command {res['command_fps']:.2f}", flush=True)
    print(f"\n{args.clips} clips x {args.frames} frames, {width}x{height}, chunks of "
          f"{args.chunk_frames}\n")
    print("| round | actors | frames | first chunk s | driver s | command s | steady fps | "
          "job fps | command fps | decode fps | enhance fps | encode fps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["stage_fps"]
        print(f"| {r['round']} | {r['workers']} | {r['frames']} | {r['first_chunk_s']:.1f} | "
              f"{r['driver_s']:.1f} | {r['wall_s']:.1f} | {r['steady_fps']:.2f} | "
              f"{r['job_fps']:.2f} | {r['command_fps']:.2f} | {s['decode']:.1f} | "
              f"{s['enhance']:.2f} | {s['encode']:.1f} |")
    ratios = {}
    for key in ("steady_fps", "job_fps", "command_fps"):
        per_round = []
        for r in range(args.rounds):
            one = next(x for x in results if x["round"] == r + 1 and x["workers"] == 1)
            two = next(x for x in results if x["round"] == r + 1 and x["workers"] == 2)
            per_round.append(two[key] / one[key])
        ratios[key] = {"rounds": per_round, "median": statistics.median(per_round)}
    print()
    for key, name in (("steady_fps", "steady state"), ("job_fps", "job (driver time)"),
                      ("command_fps", "whole command")):
        rounds = ", ".join(f"{v:.3f}" for v in ratios[key]["rounds"])
        print(f"throughput 2 actors / 1 actor, {name}: {ratios[key]['median']:.3f} "
              f"(median; rounds {rounds})")
    print("enhance fps is per actor-second: each actor's own rate, so it stays about the same "
          "while the job's fps doubles")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
