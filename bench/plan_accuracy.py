"""How close is ``nhance-batch plan``'s time estimate for this machine to a real run?

A benchmark, not a timed test: it reports and asserts nothing. On a synthetic clip of a few
seconds (``--size`` 320x180, ``--seconds`` 4, 25 fps, one AAC track) it runs, in subprocesses,
as a user would:

1. ``nhance-batch plan CLIP --json --recalibrate``: the estimate ``total.seconds_here`` from a
   fresh calibration (``--cached`` uses the cache instead);
2. ``nhance-batch run CLIP OUT --summary-json S`` with default options (plus any given after
   ``--``): the driver's time (the summary's ``seconds``) and the whole command's wall time;
3. the plan again, after the run, so that a change in the machine's load between the
   calibration and the run shows as a difference between the two estimates.

It prints the estimates, the run's times, and estimate / driver time for both estimates (the
target: within 30%, i.e. 0.7 to 1.3). ``--out F`` writes the numbers as JSON.

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
sys.path.insert(0, str(ROOT))


def _cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nhance_batch", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    return done, time.perf_counter() - start


def _plan(clip: str, recalibrate: bool) -> dict:
    args = ["plan", clip, "--json"] + (["--recalibrate"] if recalibrate else [])
    done, wall = _cli(*args)
    if done.returncode != 0:
        raise SystemExit(f"plan failed ({done.returncode}): {done.stderr[-2000:]}")
    plan = json.loads(done.stdout)
    return {"seconds_here": plan["total"]["seconds_here"], "wall_s": round(wall, 2),
            "frames": plan["total"]["frames"], "chunks": plan["total"]["chunks"],
            "calibration": plan["calibration"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--cached", action="store_true",
                        help="use the cached calibration instead of measuring again")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("run_args", nargs="*", help="extra options for run (after --)")
    args = parser.parse_args()
    from tests.media.makemedia import make_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="nhance-plan-acc-") as tmp:
        clip = str(Path(tmp) / "clip.mp4")
        make_video(clip, width=width, height=height, frames=int(round(args.seconds * 25)),
                   rate=Fraction(25), audio_tracks=1)
        before = _plan(clip, recalibrate=not args.cached)
        summary_path = Path(tmp) / "summary.json"
        done, run_wall = _cli("run", clip, str(Path(tmp) / "out"), "--summary-json",
                              str(summary_path), *args.run_args)
        if done.returncode != 0:
            raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
        summary = json.loads(summary_path.read_text())
        after = _plan(clip, recalibrate=not args.cached)
    driver = summary["seconds"]
    result = {
        "clip": {"size": args.size, "seconds": args.seconds, "frames": summary["frames"]},
        "plan_before": before, "plan_after": after,
        "run": {"driver_s": round(driver, 2), "command_s": round(run_wall, 2),
                "stage_fps": summary.get("stage_fps"),
                "enhancer_busy": summary.get("enhancer_busy")},
        "ratio_before": round(before["seconds_here"] / driver, 3),
        "ratio_after": round(after["seconds_here"] / driver, 3),
        "ratio_command_before": round(before["seconds_here"] / run_wall, 3),
    }
    print(f"clip {args.size}, {summary['frames']} frames ({before['chunks']} chunks)")
    for name in ("before", "after"):
        plan = result[f"plan_{name}"]
        c = plan["calibration"]
        print(f"plan {name} the run: {plan['seconds_here']:.1f} s (enhancer "
              f"{c['enhance_mpx_s']:.3f} Mpx/s, start-up {c['startup_s']:.1f} s, "
              f"{'cached' if c['cached'] else 'measured'})")
    print(f"run: driver {driver:.1f} s, whole command {run_wall:.1f} s; stage fps "
          f"{summary.get('stage_fps')}")
    print(f"estimate / driver time: {result['ratio_before']} (before), {result['ratio_after']} "
          f"(after); estimate before / whole command: {result['ratio_command_before']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
