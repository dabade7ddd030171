"""How close are ``nhance-batch plan``'s estimates for this machine to real runs?

A benchmark, not a timed test: it reports and asserts nothing. It makes clips of different
frame sizes from the sample footage (``--videos``, default ``../shared/videos``): carphone
(176x144, ``--frames`` of it), bikes (640x272) and bikes scaled to 1280x720 (fewer frames,
``--hd-frames``), each re-encoded with libx264 at CRF 20. Then, per clip, in subprocesses, as a
user would:

1. ``nhance-batch plan CLIP --json`` (the first clip calibrates, the others reuse the cached
   calibration; each plan enhances a crop of its sample to measure the output's growth):
   ``total.seconds_here`` and ``total.output_bytes``, and the plan's own wall time;
2. ``nhance-batch run CLIP OUT --summary-json S`` with default options (the Ray executor;
   plus any given after ``--``): the whole command's wall time, the driver's (the summary's
   ``seconds``) and the output file's bytes.

It prints estimate / actual for the time (against the whole command) and for the bytes, per
clip. The caches (calibration, autotune) start empty in a temporary folder, as on a new
machine, unless ``--cache DIR``. ``--out F`` writes the numbers as JSON.

    NHANCE_MODELS=../shared/models/dped .venv/bin/python bench/plan_accuracy.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cli(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nhance_batch", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    return done, time.perf_counter() - start


def make_clip(source: Path, dest: Path, frames: int, size: tuple[int, int] | None) -> None:
    """The first ``frames`` frames of ``source``, scaled to ``size`` (None: as they are)."""
    import av

    with av.open(str(source)) as src, av.open(str(dest), "w") as out:
        stream_in = src.streams.video[0]
        rate = stream_in.average_rate or Fraction(25)
        width, height = size or (stream_in.width, stream_in.height)
        stream = out.add_stream("libx264", rate=rate, options={"crf": "20",
                                                              "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(src.decode(stream_in)):
            if i >= frames:
                break
            picture = frame.reformat(width, height, "yuv420p")
            picture.pts, picture.time_base = i, Fraction(1) / rate
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))


def _output_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*")
               if p.is_file() and "_nhance" not in p.parts)


def measure(env: dict, clip: Path, work: Path, run_args: list[str]) -> dict:
    """Plan then run ``clip``; the estimates and what the run took and wrote."""
    done, plan_wall = _cli(env, "plan", str(clip), "--json")
    if done.returncode != 0:
        raise SystemExit(f"plan failed ({done.returncode}): {done.stderr[-2000:]}")
    plan = json.loads(done.stdout)
    out, summary_path = work / f"out-{clip.stem}", work / f"summary-{clip.stem}.json"
    done, run_wall = _cli(env, "run", str(clip), str(out), "--summary-json",
                          str(summary_path), *run_args)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(summary_path.read_text())
    total, video = plan["total"], plan["videos"][0]
    actual_bytes = _output_bytes(out)
    return {
        "clip": clip.name, "size": f"{video['width']}x{video['height']}",
        "frames": video["frames"], "chunks": video["chunks"],
        "plan_wall_s": round(plan_wall, 2),
        "calibration_cached": plan["calibration"]["cached"],
        "estimate_s": total["seconds_here"], "startup_here": total["startup_here"],
        "command_s": round(run_wall, 2), "driver_s": round(summary["seconds"], 2),
        "time_ratio": round(total["seconds_here"] / run_wall, 3),
        "estimate_bytes": total["output_bytes"], "actual_bytes": actual_bytes,
        "bytes_ratio": round(total["output_bytes"] / actual_bytes, 3),
        "output_samples": total["output_samples"],
        "stage_fps": summary.get("stage_fps"),
        "enhancer_busy_s": (summary.get("enhancer_busy") or {}).get("busy_s"),
        "gpu": plan["total"]["seconds_per_gpu_kind"],
    }


def _print(rows: list[dict], load: tuple[float, ...]) -> None:
    print(f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f} "
          f"(on {os.cpu_count()} cores)")
    print("| clip | size | frames | chunks | time est. | time actual (command) | est./actual "
          "| bytes est. | bytes actual | est./actual |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['size']} | {r['frames']} | {r['chunks']} | "
              f"{r['estimate_s']:.1f} s | {r['command_s']:.1f} s (driver {r['driver_s']:.1f}) | "
              f"{r['time_ratio']:.2f} | {r['estimate_bytes']} | {r['actual_bytes']} | "
              f"{r['bytes_ratio']:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "videos")
    parser.add_argument("--frames", type=int, default=60,
                        help="frames of carphone and of bikes (at most theirs)")
    parser.add_argument("--hd-frames", type=int, default=12,
                        help="frames of the 1280x720 clip (0: none)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="calibration and autotune cache folder [default: a new one]")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("run_args", nargs="*", help="extra options for run (after --)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nhance-plan-acc-") as tmp:
        work = Path(tmp)
        cache = args.cache or work / "cache"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NHANCE_CACHE": str(cache),
               "PYTHONPATH": str(ROOT)}
        clips = [(args.videos / "carphone.mp4", args.frames, None, "carphone"),
                 (args.videos / "bikes.mp4", args.frames, None, "bikes"),
                 (args.videos / "bikes.mp4", args.hd_frames, (1280, 720), "bikes720")]
        rows = []
        for source, frames, size, name in clips:
            if frames <= 0:
                continue
            clip = work / f"{name}.mp4"
            make_clip(source, clip, frames, size)
            rows.append(measure(env, clip, work, args.run_args))
            print(json.dumps(rows[-1]), flush=True)
    _print(rows, load)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
