"""Pipeline benchmark: enhancer-only fps against end-to-end ``nhance-batch run`` fps, and the
run's peak memory, for a short and a long synthetic clip (a benchmark, not a timed test).

For each clip length (``--seconds-short`` 10 s and ``--seconds-long`` 100 s at 25 fps, at
``--size``, with an AAC audio track), in one process:

1. **enhancer-only fps**: the clip is decoded (``media.decode_all``) outside any timing, then
   ``Enhancer(ModelConfig(batch_size=4, threads=<all cores>))`` runs in this process on all of
   its frames, in ``--chunk-frames``-sized calls (``as_float=True``, as the pipeline's enhance
   stage calls it), after a warm-up call that compiles the shape. Frames = the clip's frames.
   This pass runs once before and once after the end-to-end run (the machine is shared and
   noisy); the reported figure is their mean, both are in the JSON.
2. **end-to-end fps**: ``python -m nhance_batch run CLIP OUTDIR --summary-json ...`` in a
   subprocess, default options (``--chunk-frames`` is passed only when given), fresh output
   folder. Two ratios are reported:

   * ``whole``: clip frames / wall time of the whole command (Python start-up, imports, Ray
     start-up, actor creation and model load, the run, Ray shutdown);
   * ``driver``: clip frames / the summary's ``seconds`` (``Driver.run`` only: listing,
     probing, every chunk, assembly, manifest saves; it excludes Python and Ray start-up and
     shutdown, but includes the wait for the actor to load the model, which overlaps probing,
     and the actor's first XLA compile, which happens on the first chunk).

   The run's own per-stage fps (``stage_fps``: decoded frames / summed stage seconds, measured
   inside the tasks) are reported too.
3. **CPU seconds per frame**: the enhancer-only pass's CPU time (this process) and the run's
   whole process tree (user + system, last sample of each process), per clip frame. They do
   not depend on what else the shared machine runs, unlike fps.
4. **peak memory of the run**: the subprocess and all its descendants (driver, raylet,
   gcs_server, Ray's helper processes, workers, the enhancer actor) are sampled with psutil:
   RSS every ``--interval`` (0.5 s); the tree is re-listed and PSS and CPU times read every
   ``--full-every`` (4) samples, i.e. every 2 s (reading PSS walks page tables: at every
   0.2 s the sampler took about a fifth of a core, at 0.2 s with PSS once a second still
   5.5% of one, which the run it measures loses on this 2-core machine). Two totals, each summed at one sample:

   * ``rss``: the sum of every process's RSS. It over-counts what is shared: shared
     libraries, and Ray's object store (plasma, a shared memory mapping in /dev/shm) pages,
     which count in every process that touched them.
   * ``pss``: the sum of every process's PSS (proportional set size: each shared page is split
     among the processes mapping it), so shared pages, the object store included, are counted
     once within the tree. This is the figure to compare between clips.

   Peaks of the driver (the subprocess itself) and of the enhancer actor (the process whose
   command line holds ``_EnhancerActor``) are reported individually, RSS and PSS.

Output: a Markdown table on stdout; JSON at ``--out``.
Targets (reported, not asserted): end-to-end / enhancer-only fps >= 0.90; peak memory of the
long clip <= 1.1x that of the short one.

Usage: ``NHANCE_MODELS=... .venv/bin/python bench/pipeline.py [--size 64x48] [--out x.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FPS = 25
TARGET_RATIO = 0.90
TARGET_MEMORY = 1.10


# -- memory sampling -----------------------------------------------------------------------
@dataclass
class MemoryPeaks:
    """Peaks over the samples (bytes); the totals are per-sample sums over the tree."""

    samples: int = 0
    total_rss: int = 0
    total_pss: int = 0
    driver_rss: int = 0
    driver_pss: int = 0
    actor_rss: int = 0
    actor_pss: int = 0
    max_processes: int = 0
    cpu_s: float = 0.0        # user+system seconds of the whole tree (last sample of each pid)
    actor_cpu_s: float = 0.0  # of the enhancer actor
    at_peak: dict = field(default_factory=dict)  # name -> pss of each process at total_pss peak

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _kind(proc) -> str:
    """A short label: driver is set by the caller; actor, ray::<task>, raylet, gcs_server, or
    the Python script's name (dashboard, agent, log_monitor, monitor...)."""
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - gone or unreadable
        return "?"
    line = " ".join(cmd)
    if "_EnhancerActor" in line:
        return "actor"
    if line.startswith("ray::"):
        return cmd[0].split()[0]  # ray::IDLE, ray::decode_stage, ...
    exe = os.path.basename(cmd[0]) if cmd else "?"
    if exe in ("raylet", "gcs_server"):
        return exe
    scripts = [os.path.basename(a)[:-3] for a in cmd[1:] if a.endswith(".py")]
    return scripts[0] if scripts else exe


class TreeSampler(threading.Thread):
    """Samples the memory of ``pid`` and its descendants.

    Every ``interval`` seconds: the RSS of each known process (cheap: /proc/PID/statm). Every
    ``full_every`` samples: the process tree is re-listed (new workers), and each process's
    PSS (smaps_rollup, which walks its page tables) and CPU times are read. The full reads are
    kept sparse because on this 2-core machine the sampler competes with the run it measures
    (its own CPU time is reported).
    """

    def __init__(self, pid: int, interval: float, full_every: int = 5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.full_every = max(1, full_every)
        self.peaks = MemoryPeaks()
        self._halt = threading.Event()

    def stop(self) -> MemoryPeaks:
        self._halt.set()
        self.join()
        return self.peaks

    def run(self) -> None:
        import psutil

        p = self.peaks
        cpu: dict[int, float] = {}
        kinds: dict[int, str] = {}
        procs: list = []
        tick = 0
        while not self._halt.is_set():
            full = tick % self.full_every == 0
            tick += 1
            if full:
                try:
                    procs = [self.root] + self.root.children(recursive=True)
                except psutil.Error:
                    break
            rss_sum = pss_sum = 0
            seen = {}
            for proc in procs:
                try:
                    if full:
                        mem = proc.memory_full_info()  # rss, uss, pss, swap (smaps_rollup)
                        times = proc.cpu_times()
                        cpu[proc.pid] = times.user + times.system
                    else:
                        mem = proc.memory_info()
                except psutil.Error:
                    continue
                if (full or proc.pid not in kinds) and kinds.get(proc.pid) != "actor":
                    # re-read: a worker renames itself (default_worker.py -> ray::...)
                    kinds[proc.pid] = "driver" if proc.pid == self.root.pid else _kind(proc)
                kind = kinds[proc.pid]
                rss_sum += mem.rss
                if kind == "driver":
                    p.driver_rss = max(p.driver_rss, mem.rss)
                elif kind == "actor":
                    p.actor_rss = max(p.actor_rss, mem.rss)
                if full:
                    pss_sum += mem.pss
                    seen[f"{kind}[{proc.pid}]"] = mem.pss
                    if kind == "driver":
                        p.driver_pss = max(p.driver_pss, mem.pss)
                    elif kind == "actor":
                        p.actor_pss = max(p.actor_pss, mem.pss)
            p.samples += 1
            p.total_rss = max(p.total_rss, rss_sum)
            if full:
                p.max_processes = max(p.max_processes, len(procs))
                p.cpu_s = sum(cpu.values())
                p.actor_cpu_s = sum(v for pid, v in cpu.items() if kinds.get(pid) == "actor")
                if pss_sum > p.total_pss:
                    p.total_pss, p.at_peak = pss_sum, seen
            self._halt.wait(self.interval)


# -- the measurements ----------------------------------------------------------------------
def make_clip(folder: Path, seconds: int, width: int, height: int) -> Path:
    from tests.media.makemedia import make_video

    path = folder / f"clip_{seconds}s_{width}x{height}.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        make_video(tmp, width=width, height=height, frames=seconds * FPS, audio_tracks=1)
        tmp.rename(path)
    return path


class EnhancerOnly:
    """The enhancer in this process, compiled once, timed over a clip's decoded frames."""

    def __init__(self, batch: int, threads: int) -> None:
        from nhance_batch.config import ModelConfig
        from nhance_batch.model.enhancer import Enhancer

        self.enhancer = Enhancer(ModelConfig(batch_size=batch, threads=threads))
        self.enhancer.setup()

    def time(self, frames, chunk: int) -> float:
        """Seconds to enhance every frame in ``chunk``-frame calls (after a warm-up call)."""
        self.enhancer(frames[:chunk], as_float=True)  # compile (no-op once compiled)
        cpu0, start = time.process_time(), time.perf_counter()
        for i in range(0, len(frames), chunk):
            self.enhancer(frames[i:i + chunk], as_float=True)
        self.cpu_s = time.process_time() - cpu0
        return time.perf_counter() - start


def decode_clip(path: Path):
    from nhance_batch.media import decode_all, probe

    return decode_all(str(path), probe(str(path))).frames


def run_pipeline(clip: Path, work: Path, chunk_frames: int | None, interval: float,
                 full_every: int, extra: list[str]) -> dict:
    out = work / f"out_{clip.stem}"
    shutil.rmtree(out, ignore_errors=True)
    summary_path = work / f"summary_{clip.stem}.json"
    summary_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "nhance_batch", "run", str(clip), str(out),
           "--summary-json", str(summary_path)]
    if chunk_frames:
        cmd += ["--chunk-frames", str(chunk_frames)]
    cmd += extra
    log_path = work / f"run_{clip.stem}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    with open(log_path, "w") as log:
        own_cpu = time.process_time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        sampler = TreeSampler(proc.pid, interval, full_every)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - start
    peaks = sampler.stop()
    own_cpu = time.process_time() - own_cpu  # this process while it waited: the sampler
    if rc != 0 or not summary_path.exists():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {rc}:\n{tail}")
    summary = json.loads(summary_path.read_text())
    chunks = _chunk_times(out)
    return {"command": cmd, "wall_s": wall, "sampler_cpu_s": own_cpu,
            "summary": summary, "memory": peaks.as_dict(),
            "chunks": chunks, "log": str(log_path)}


def _chunk_times(out: Path) -> dict:
    """Per-chunk stage seconds from the job's manifest (sums and counts)."""
    try:
        from nhance_batch.state.manifest import load_manifest

        manifest = load_manifest(str(out / "_nhance" / "manifest.parquet"))
    except Exception as exc:  # noqa: BLE001 - informative only
        return {"error": f"{type(exc).__name__}: {exc}"}
    if manifest is None:
        return {}
    rows = [c for v in manifest.videos for c in v.chunks]
    own = sum(c.end - c.start for c in rows)
    ctx = sum(c.ctx_end - c.ctx_start for c in rows)
    return {
        "count": len(rows), "own_frames": own, "decoded_frames": ctx,
        "decode_s": sum(c.decode_s or 0.0 for c in rows),
        "enhance_s": sum(c.enhance_s or 0.0 for c in rows),
        "encode_s": sum(c.encode_s or 0.0 for c in rows),
        "first_enhance_s": rows[0].enhance_s if rows else None,
        "median_enhance_s": sorted(c.enhance_s or 0.0 for c in rows)[len(rows) // 2]
        if rows else None,
    }


def measure(seconds: int, args, work: Path, enhancer: EnhancerOnly) -> dict:
    width, height = args.size
    clip = make_clip(work, seconds, width, height)
    frames = decode_clip(clip)
    n = len(frames)
    chunk = args.chunk_frames or 64
    before = enhancer.time(frames, chunk)
    cpu_runs = [enhancer.cpu_s]
    print(f"[{seconds} s] enhancer-only (before): {n / before:.2f} fps", file=sys.stderr,
          flush=True)
    del frames
    e2e = run_pipeline(clip, work, args.chunk_frames, args.interval, args.full_every,
                       args.run_args)
    print(f"[{seconds} s] end-to-end: {n / e2e['wall_s']:.2f} fps (wall {e2e['wall_s']:.1f} s)",
          file=sys.stderr, flush=True)
    after = None
    if not args.no_bracket:
        frames = decode_clip(clip)
        after = enhancer.time(frames, chunk)
        cpu_runs.append(enhancer.cpu_s)
        del frames
        print(f"[{seconds} s] enhancer-only (after): {n / after:.2f} fps", file=sys.stderr,
              flush=True)
    enh_fps = [n / before] + ([n / after] if after else [])
    enh = sum(enh_fps) / len(enh_fps)
    summary = e2e["summary"]
    whole_fps = n / e2e["wall_s"]
    driver_fps = n / summary["seconds"] if summary["seconds"] else 0.0
    return {
        "seconds": seconds, "frames": n, "size": f"{width}x{height}", "clip": str(clip),
        "enhancer_fps": enh, "enhancer_fps_runs": enh_fps,
        "e2e_whole_fps": whole_fps, "e2e_driver_fps": driver_fps,
        "ratio_whole": whole_fps / enh, "ratio_driver": driver_fps / enh,
        "enhancer_cpu_s_per_frame": sum(cpu_runs) / len(cpu_runs) / n,
        "e2e_cpu_s_per_frame": e2e["memory"]["cpu_s"] / n,
        "actor_cpu_utilisation": (e2e["memory"]["actor_cpu_s"] / e2e["chunks"]["enhance_s"]
                                  if e2e["chunks"].get("enhance_s") else None),
        "sampler_cpu_s": e2e["sampler_cpu_s"],
        "wall_s": e2e["wall_s"], "driver_s": summary["seconds"],
        "outside_driver_s": e2e["wall_s"] - summary["seconds"],
        "stage_fps": summary["stage_fps"], "summary_frames": summary["frames"],
        "chunks": e2e["chunks"], "memory": e2e["memory"], "command": e2e["command"],
        "log": e2e["log"],
    }


# -- reporting -----------------------------------------------------------------------------
def _mib(b: int) -> str:
    return f"{b / 2**20:.0f}"


def table(results: list[dict]) -> str:
    rows = [
        ("frames", lambda r: str(r["frames"])),
        ("enhancer-only fps (this process, mean of runs)",
         lambda r: f"{r['enhancer_fps']:.2f} ({', '.join(f'{x:.2f}' for x in r['enhancer_fps_runs'])})"),
        ("end-to-end fps, whole command (frames / wall)", lambda r: f"{r['e2e_whole_fps']:.2f}"),
        ("end-to-end fps, driver only (frames / summary seconds)",
         lambda r: f"{r['e2e_driver_fps']:.2f}"),
        (f"ratio whole / enhancer-only (target >= {TARGET_RATIO})",
         lambda r: f"**{r['ratio_whole']:.3f}**"),
        (f"ratio driver-only / enhancer-only (target >= {TARGET_RATIO})",
         lambda r: f"**{r['ratio_driver']:.3f}**"),
        ("wall s: whole / driver / outside driver (start-up, shutdown)",
         lambda r: f"{r['wall_s']:.1f} / {r['driver_s']:.1f} / {r['outside_driver_s']:.1f}"),
        ("run's stage fps: decode / enhance / encode",
         lambda r: " / ".join(f"{r['stage_fps'][k]:.1f}" for k in ("decode", "enhance", "encode"))),
        ("chunks; frames enhanced (own + context)",
         lambda r: f"{r['chunks'].get('count')}; {r['chunks'].get('decoded_frames')}"),
        ("first / median chunk enhance s",
         lambda r: f"{r['chunks'].get('first_enhance_s') or 0:.2f} / "
                   f"{r['chunks'].get('median_enhance_s') or 0:.2f}"),
        ("CPU s per frame: enhancer-only / whole run tree (load-independent)",
         lambda r: f"{r['enhancer_cpu_s_per_frame']:.3f} / {r['e2e_cpu_s_per_frame']:.3f}"),
        ("enhancer actor: CPU s / chunk enhance wall s (cores used)",
         lambda r: f"{r['actor_cpu_utilisation'] or 0:.2f}"),
        ("sampler's own CPU s during the run", lambda r: f"{r['sampler_cpu_s']:.1f}"),
        ("peak total PSS, MiB (tree, shared counted once; every --full-every samples)",
         lambda r: _mib(r["memory"]["total_pss"])),
        ("peak total RSS, MiB (tree, shared counted per process)",
         lambda r: _mib(r["memory"]["total_rss"])),
        ("peak driver RSS / PSS, MiB",
         lambda r: f"{_mib(r['memory']['driver_rss'])} / {_mib(r['memory']['driver_pss'])}"),
        ("peak enhancer actor RSS / PSS, MiB",
         lambda r: f"{_mib(r['memory']['actor_rss'])} / {_mib(r['memory']['actor_pss'])}"),
        ("processes in tree (max); samples",
         lambda r: f"{r['memory']['max_processes']}; {r['memory']['samples']}"),
    ]
    head = "| | " + " | ".join(f"{r['seconds']} s clip ({r['size']})" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for name, fn in rows:
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in results) + " |")
    return "\n".join(lines)


def memory_ratios(results: list[dict]) -> dict:
    if len(results) < 2:
        return {}
    short, long = results[0]["memory"], results[-1]["memory"]
    return {k: long[k] / short[k] for k in ("total_pss", "total_rss", "driver_rss", "actor_rss")
            if short[k]}


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=_size, default=(64, 48), help="WxH [64x48]")
    parser.add_argument("--seconds-short", type=int, default=10)
    parser.add_argument("--seconds-long", type=int, default=100)
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="passed to `run` (default: its own default) and used as the "
                             "enhancer-only call size [64]")
    parser.add_argument("--batch", type=int, default=4, help="enhancer-only batch size [4]")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="RSS sampling period, seconds [0.5]")
    parser.add_argument("--full-every", type=int, default=4,
                        help="re-list the process tree and read PSS and CPU times every N "
                             "samples [4]")
    parser.add_argument("--no-bracket", action="store_true",
                        help="time enhancer-only once (before the run), not before and after")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="clips and outputs [a temporary folder, removed at the end]")
    parser.add_argument("--out", type=Path, default=None, help="write JSON here")
    parser.add_argument("run_args", nargs="*", help="extra `run` options after --")
    args = parser.parse_args(argv)
    if not os.environ.get("NHANCE_MODELS"):
        print("note: NHANCE_MODELS is not set; the model resolves from the cache or downloads",
              file=sys.stderr)

    threads = os.cpu_count() or 1
    own_work = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="nhance_bench_")) if own_work else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    enhancer = EnhancerOnly(args.batch, threads)
    results = []
    lengths = [args.seconds_short] + ([] if args.skip_long else [args.seconds_long])
    try:
        for seconds in lengths:
            results.append(measure(seconds, args, work, enhancer))
            _write(args.out, results, threads)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    ratios = memory_ratios(results)
    if ratios:
        print(f"\npeak memory {args.seconds_long} s / {args.seconds_short} s clip: "
              + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
              + f" (target <= {TARGET_MEMORY})")
    print(f"\nenhancer-only: Enhancer(batch_size={args.batch}, threads={threads}) in this "
          f"process, {args.chunk_frames or 64}-frame calls, as_float=True, after warm-up; "
          "whole = the entire `run` command; driver = the summary's seconds (Driver.run only)")
    return 0


def _write(out: Path | None, results: list[dict], threads: int) -> None:
    if out is None:
        return
    import platform

    doc = {"machine": {"cpus": threads, "python": platform.python_version()},
           "targets": {"ratio": TARGET_RATIO, "memory": TARGET_MEMORY},
           "results": results, "memory_ratio_long_over_short": memory_ratios(results)}
    out.write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
