"""DPED throughput on a GPU with JAX: frames/s and GFLOP/s in float32 and bfloat16.

Standalone: runs where the project is not installed and TensorFlow is absent (a GPU machine
with JAX and CUDA, plus Keras 3: ``pip install keras``; see bench/README.md). It imports only
``nhance_batch.model.dped`` and ``nhance_batch.model.checkpoint`` (numpy and the standard
library at import time) from this checkout.

For each size (default 1280x720 and 1920x1080) and each compute type, ``jax.jit(dped.forward)``
is compiled for every candidate batch size, warmed up and timed (block_until_ready after every
call, iterations capped by time); the best batch is kept. The same run times 8192^3 matmuls in
bfloat16 and float32 (JAX's default precision, and "highest"), and measures the bfloat16 output's
PSNR against float32 on a smooth synthetic frame. A Markdown table goes to stdout, JSON to --out
(rewritten after every stage, so a run cut short still leaves what it measured).

    KERAS_BACKEND=jax python3 bench/gpu_dped.py --out gpu_dped.json
    KERAS_BACKEND=jax python3 bench/gpu_dped.py --quick --out quick.json   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nhance_batch.model.dped import FLOPS_PER_PIXEL, DPEDWeights, forward  # noqa: E402

DEFAULT_WEIGHTS = ROOT / "bench" / "_weights" / "iphone_orig"


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def synthetic_frame(height: int, width: int, index: int = 0) -> np.ndarray:
    """A smooth, photo-like RGB frame in [0, 1] (quantised to 8 bits), deterministic per index.

    Sky-to-ground gradient, a few soft coloured blobs, gentle waves and a little sensor noise.
    """
    rng = np.random.default_rng(1000 + index)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    base = np.stack([0.35 + 0.3 * y + 0.1 * x, 0.45 + 0.15 * y - 0.05 * x,
                     0.75 - 0.45 * y + 0.05 * x], axis=-1)
    img = np.broadcast_to(base, (height, width, 3)).copy()
    for _ in range(6):
        cy, cx = rng.uniform(0, 1, 2)
        r = rng.uniform(0.05, 0.25)
        color = rng.uniform(-0.3, 0.3, 3).astype(np.float32)
        blob = np.exp(-((y - cy) ** 2 + ((x - cx) * width / height) ** 2) / (2 * r * r))
        img += blob[..., None] * color
    fy, fx = rng.uniform(3, 12, 2)
    img += 0.04 * (np.sin(2 * np.pi * fy * y + index) * np.cos(2 * np.pi * fx * x))[..., None]
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return (np.round(np.clip(img, 0, 1) * 255) / 255).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float | str:
    """PSNR (peak 1) of two outputs clipped to [0, 1], as they are delivered ("inf": identical)."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return "inf" if mse == 0 else round(float(10 * np.log10(1.0 / mse)), 2)


class Bench:
    def __init__(self, args):
        import jax
        import keras

        self.args, self.jax = args, jax
        self.t0 = time.perf_counter()
        self.notes: list[str] = []
        self.max_compile = 0.0
        self._frames: dict[tuple[int, int], np.ndarray] = {}
        dev = jax.devices()[0]
        self.result = {
            "script": "bench/gpu_dped.py",
            "quick": args.quick,
            "host": platform.node(),
            "python": platform.python_version(),
            "jax_version": jax.__version__,
            "keras_version": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "devices": [str(d) for d in jax.devices()],
            "device_kind": getattr(dev, "device_kind", str(dev)),
            "platform": dev.platform,
            "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
            "flops_per_pixel": FLOPS_PER_PIXEL,
            "matmul": {},
            "dped": [],
            "psnr": [],
            "notes": self.notes,
        }
        print(f"jax {jax.__version__} (keras {keras.__version__}, backend "
              f"{keras.backend.backend()}), devices: {jax.devices()}")
        print(f"device kind: {self.result['device_kind']}; default matmul precision: "
              f"{self.result['default_matmul_precision']} (None = XLA default: TF32 on GPUs "
              f"for float32)")

    # -- bookkeeping ------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def note(self, text: str) -> None:
        print(f"NOTE: {text}")
        self.notes.append(text)

    def save(self) -> None:
        self.result["elapsed_s"] = round(self.elapsed(), 2)
        if self.args.out:
            Path(self.args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(self.args.out).write_text(json.dumps(self.result, indent=2) + "\n")

    def time_left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def _timed(self, fn, x, seconds: float, max_iters: int) -> tuple[list[float], object]:
        times, out = [], None
        start = time.perf_counter()
        while len(times) < max_iters and (not times or time.perf_counter() - start < seconds):
            t = time.perf_counter()
            out = fn(x)
            out.block_until_ready()
            times.append(time.perf_counter() - t)
        return times, out

    # -- matmul -----------------------------------------------------------------------------
    def matmul(self) -> None:
        jax, jnp = self.jax, self.jax.numpy
        n = self.args.matmul_n
        key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
        for label, dtype, precision in (("bf16", jnp.bfloat16, None),
                                        ("f32", jnp.float32, None),
                                        ("f32_highest", jnp.float32, "highest")):
            a = jax.random.normal(key_a, (n, n), dtype)
            b = jax.random.normal(key_b, (n, n), dtype)
            fn = jax.jit(lambda p, q, prec=precision: jnp.matmul(p, q, precision=prec))
            fn(a, b).block_until_ready()
            fn(a, b).block_until_ready()
            times, _ = self._timed(lambda _x: fn(a, b), None, self.args.matmul_seconds,
                                   self.args.max_iters)
            best = min(times)
            tflops = 2 * n ** 3 / best / 1e12
            self.result["matmul"][f"{label}_tflops"] = round(tflops, 3)
            print(f"matmul {n}^3 {label}: {best * 1e3:.2f} ms, {tflops:.3g} TFLOP/s "
                  f"({len(times)} iterations)")
        self.result["matmul"]["n"] = n
        self.save()

    # -- DPED -------------------------------------------------------------------------------
    def compile_fn(self, weights: DPEDWeights, dtype: str, precision=None):
        jax = self.jax

        def run(x):
            if precision is None:
                return forward(x, weights, dtype)
            with jax.default_matmul_precision(precision):
                return forward(x, weights, dtype)

        return jax.jit(run)

    def frames(self, width: int, height: int, batch: int) -> np.ndarray:
        have = self._frames.get((width, height), np.zeros((0, height, width, 3), np.float32))
        if len(have) < batch:
            new = [synthetic_frame(height, width, i) for i in range(len(have), batch)]
            have = self._frames[(width, height)] = np.concatenate([have, np.stack(new)])
        return have[:batch]

    def dped_config(self, weights, width: int, height: int, dtype: str, batch: int) -> dict | None:
        jax = self.jax
        x = jax.device_put(self.frames(width, height, batch))
        fn = self.compile_fn(weights, dtype)
        t = time.perf_counter()
        try:
            out = fn(x)
            out.block_until_ready()
        except Exception as exc:  # out of memory, compile failure: skip this batch
            self.note(f"{width}x{height} {dtype} batch {batch} failed: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:200]}")
            return None
        compile_s = time.perf_counter() - t
        self.max_compile = max(self.max_compile, compile_s)
        fn(x).block_until_ready()  # one more warm-up
        times, out = self._timed(fn, x, self.args.seconds, self.args.max_iters)
        med = float(np.median(times))
        pixels = batch * width * height
        entry = {
            "size": f"{width}x{height}", "width": width, "height": height, "dtype": dtype,
            "batch": batch, "compile_s": round(compile_s, 2), "iterations": len(times),
            "ms_per_batch_median": round(med * 1e3, 3),
            "ms_per_batch_best": round(min(times) * 1e3, 3),
            "fps": round(batch / med, 3),
            "gflops": round(pixels * FLOPS_PER_PIXEL / med / 1e9, 1),
        }
        print(f"  {width}x{height} {dtype:8s} batch {batch}: compile {compile_s:.1f} s, "
              f"{med * 1e3:.2f} ms/batch, {entry['fps']:.2f} frames/s, "
              f"{entry['gflops']:.0f} GFLOP/s ({len(times)} iterations)")
        entry["_out0"] = np.asarray(out[0])
        del out, x
        return entry

    def dped(self, weights, sizes, dtypes, batches) -> None:
        best: dict[tuple, dict] = {}
        candidates: dict[tuple, list] = {}
        refs: dict[tuple, np.ndarray] = {}

        def try_config(size, dtype, batch, essential: bool):
            need = self.max_compile + self.args.seconds + 2
            if not essential and self.time_left() < need:
                self.note(f"skipped {size[0]}x{size[1]} {dtype} batch {batch}: "
                          f"{self.time_left():.0f} s left of the budget")
                return
            entry = self.dped_config(weights, *size, dtype, batch)
            if entry is None:
                return
            key = (size, dtype)
            out0 = entry.pop("_out0")
            candidates.setdefault(key, []).append(dict(entry))
            if key not in best or entry["fps"] > best[key]["fps"]:
                best[key] = entry
                best[key]["_out0"] = out0
            self.publish(best, candidates)

        # Pass 1: one batch per size and type, and the float32 "highest" reference for PSNR;
        # pass 2: the other candidate batches, while the time budget allows.
        for size in sizes:
            for dtype in dtypes:
                try_config(size, dtype, batches[0], essential=True)
            if self.args.psnr:
                refs[size] = self.reference(weights, *size)
                self.publish_psnr(size, best, refs[size])
        for batch in batches[1:]:
            for size in sizes:
                for dtype in dtypes:
                    try_config(size, dtype, batch, essential=False)
        if self.args.psnr:
            for size in sizes:
                if size in refs:
                    self.publish_psnr(size, best, refs[size])

    def reference(self, weights, width: int, height: int) -> np.ndarray | None:
        """Frame 0 through float32 at precision "highest" (no TF32), batch 1."""
        if self.time_left() < self.max_compile + 2:
            self.note(f"skipped the float32-highest reference at {width}x{height}: out of budget")
            return None
        x = self.jax.device_put(self.frames(width, height, 1))
        try:
            out = np.asarray(self.compile_fn(weights, "float32", "highest")(x)[0])
        except Exception as exc:
            self.note(f"reference at {width}x{height} failed: {type(exc).__name__}: {exc}"[:300])
            return None
        return out

    def publish(self, best, candidates) -> None:
        rows = []
        for (size, dtype), entry in best.items():
            row = {k: v for k, v in entry.items() if not k.startswith("_")}
            row["candidates"] = candidates[(size, dtype)]
            rows.append(row)
        self.result["dped"] = rows
        self.save()

    def publish_psnr(self, size, best, ref) -> None:
        width, height = size
        f32 = best.get((size, "float32"), {}).get("_out0")
        bf16 = best.get((size, "bfloat16"), {}).get("_out0")
        row = {"size": f"{width}x{height}", "frame": "synthetic smooth frame 0",
               "reference": "float32, matmul precision highest"}
        if bf16 is not None and f32 is not None:
            row["bf16_vs_f32_db"] = psnr(bf16, f32)
            row["bf16_vs_f32_max_abs"] = float(np.max(np.abs(bf16 - f32)))
        if ref is not None:
            for name, out in (("bf16", bf16), ("f32", f32)):
                if out is not None:
                    row[f"{name}_vs_f32_highest_db"] = psnr(out, ref)
                    row[f"{name}_vs_f32_highest_max_abs"] = float(np.max(np.abs(out - ref)))
        self.result["psnr"] = [r for r in self.result["psnr"] if r["size"] != row["size"]] + [row]
        self.save()


def table(result: dict) -> str:
    mm = result["matmul"]
    lines = [
        f"Device: {result['device_kind']} ({result['platform']}), jax {result['jax_version']}, "
        f"keras {result['keras_version']}; weights: {result.get('weights', '?')}",
        "",
        f"matmul {mm.get('n')}^3: bf16 {mm.get('bf16_tflops', float('nan')):.3g} TFLOP/s, "
        f"float32 (default precision) {mm.get('f32_tflops', float('nan')):.3g} TFLOP/s, "
        f"float32 highest {mm.get('f32_highest_tflops', float('nan')):.3g} TFLOP/s",
        "",
        "| size | dtype | batch | ms/batch | frames/s | GFLOP/s | % of same-dtype matmul | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["dped"]:
        peak = mm.get("bf16_tflops" if row["dtype"] == "bfloat16" else "f32_tflops")
        frac = f"{100 * row['gflops'] / (peak * 1e3):.0f}%" if peak else "-"
        lines.append(f"| {row['size']} | {row['dtype']} | {row['batch']} | "
                     f"{row['ms_per_batch_median']:.2f} | {row['fps']:.2f} | {row['gflops']:.0f} | "
                     f"{frac} | {row['compile_s']:.1f} |")
    if result["psnr"]:
        lines += ["", "| size | bf16 vs f32 PSNR dB | bf16 vs f32-highest dB | "
                      "f32 vs f32-highest dB | bf16 max abs diff |", "|---|---|---|---|---|"]
        for row in result["psnr"]:
            def g(k, fmt="{:.2f}"):
                v = row.get(k, "-")
                return fmt.format(v) if isinstance(v, float) else str(v)
            lines.append(f"| {row['size']} | {g('bf16_vs_f32_db')} | "
                         f"{g('bf16_vs_f32_highest_db')} | {g('f32_vs_f32_highest_db')} | "
                         f"{g('bf16_vs_f32_max_abs', '{:.4f}')} |")
    if result["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated WxH")
    p.add_argument("--batches", default="1,4,8",
                   help="candidate batch sizes, tried in this order (the first for every "
                        "config, the others while the budget allows); the best is reported")
    p.add_argument("--batch", type=int, help="one fixed batch size (overrides --batches)")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per config (after warm-up)")
    p.add_argument("--max-iters", type=int, default=200)
    p.add_argument("--matmul-n", type=int, default=8192)
    p.add_argument("--matmul-seconds", type=float, default=1.5)
    p.add_argument("--budget-s", type=float, default=210.0,
                   help="stop trying extra batch sizes once this much wall time is used")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="checkpoint prefix")
    p.add_argument("--no-psnr", dest="psnr", action="store_false")
    p.add_argument("--out", help="JSON output path")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke test: 64x48 and 96x64, batches 1,2, one iteration, small matmul")
    args = p.parse_args(argv)
    if os.environ["KERAS_BACKEND"] != "jax":
        p.error(f"needs KERAS_BACKEND=jax (or unset), not {os.environ['KERAS_BACKEND']!r}")
    if args.quick:
        args.sizes, args.batches = "64x48,96x64", "1,2"
        args.seconds, args.max_iters, args.matmul_n, args.matmul_seconds = 0.0, 1, 256, 0.0
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    batches = [args.batch] if args.batch else [int(b) for b in args.batches.split(",")]
    dtypes = args.dtypes.split(",")

    bench = Bench(args)
    prefix = Path(args.weights)
    if prefix.with_name(prefix.name + ".index").exists():
        weights = DPEDWeights.load(prefix)
        bench.result["weights"] = f"iphone checkpoint {prefix}"
    else:
        weights = DPEDWeights.random()
        bench.result["weights"] = "RANDOM (checkpoint missing)"
        bench.note(f"no checkpoint at {prefix}: using DPEDWeights.random(); speed is the same, "
                   f"but PSNR figures are NOT those of the real model (run bench/prepare_gpu.sh)")
    print(f"weights: {bench.result['weights']}")
    bench.save()

    bench.matmul()
    print(f"DPED ({', '.join(dtypes)}; sizes {args.sizes}; batches {batches}):")
    bench.dped(weights, sizes, dtypes, batches)
    bench.save()
    print()
    print(table(bench.result))
    print(f"\ntotal {bench.elapsed():.1f} s" + (f"; JSON in {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
