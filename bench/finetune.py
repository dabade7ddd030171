"""Fine-tuning speed and memory: steps/s and peak memory of `nhance-batch finetune`'s training
step, with the full recipe (content network, discriminator, Adam on both), after warm-up.

    python bench/finetune.py                          # CPU: TensorFlow, patch 100, batch 16
    KERAS_BACKEND=jax python bench/finetune.py --batch 50 --backend jax   # a GPU machine

Prints steps/s, patches/s, the generator's achieved GFLOP/s (3 x its forward FLOPs per patch
pixel: forward plus backward), the same process's float32 matmul GFLOP/s and their ratio, and
the peak memory (the process's peak RSS; on a GPU also the device's peak bytes in use). Pairs
are synthetic (smooth random images: speed does not depend on content) unless --pairs is given.
On a shared machine the absolute numbers move with the load; the ratio to matmul moves less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _synthetic_pairs(root: Path, n: int, side: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    for sub in ("phone", "target"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        field = gaussian_filter(rng.random((side, side, 3)), (4, 4, 0))
        field = (field - field.min()) / (field.max() - field.min() + 1e-9)
        target = (field * 255).astype(np.uint8)
        phone = np.clip(field ** 1.3 * 0.85 * 255 + rng.normal(0, 3, field.shape), 0, 255)
        Image.fromarray(target).save(root / "target" / f"{i}.png")
        Image.fromarray(phone.astype(np.uint8)).save(root / "phone" / f"{i}.png")


def _matmul_gflops(seconds: float = 2.0) -> float:
    import numpy as np
    from keras import ops

    a = ops.convert_to_tensor(np.random.default_rng(0).random((1024, 1024), np.float32))
    np.asarray(ops.matmul(a, a))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.asarray(ops.matmul(a, a))
        n += 1
    return 2 * 1024 ** 3 * n / (time.perf_counter() - start) / 1e9


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patch", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--content", default="efficientnet-lite0")
    parser.add_argument("--texture-weight", type=float, default=1.0)
    parser.add_argument("--backend", choices=["tensorflow", "jax"], default=None,
                        help="Keras backend (default: KERAS_BACKEND or tensorflow)")
    parser.add_argument("--no-jit", action="store_true")
    parser.add_argument("--pairs", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from nhance_batch.finetune.losses import LossWeights
    from nhance_batch.finetune.train import FinetuneConfig, finetune
    from nhance_batch.model.dped import FLOPS_PER_PIXEL

    work = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    pairs = args.pairs
    if pairs is None:
        pairs = str(work / "pairs")
        _synthetic_pairs(Path(pairs), n=12, side=max(2 * args.patch, 256))
    times: list[float] = []
    total = args.warmup + args.steps
    config = FinetuneConfig(pairs=pairs, name="bench", steps=total, batch=args.batch,
                            patch=args.patch, content=args.content,
                            weights=LossWeights(texture=args.texture_weight),
                            val_fraction=0.1, out=str(work / "out"),
                            checkpoint_every=10 ** 9, jit=not args.no_jit)
    try:
        finetune(config, lambda event: times.append(time.perf_counter()))
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    timed = times[args.warmup:]
    steps_per_s = (len(timed) - 1) / (timed[-1] - timed[0])
    pixels = args.batch * args.patch ** 2
    gflops = 3 * FLOPS_PER_PIXEL * pixels * steps_per_s / 1e9
    matmul = _matmul_gflops()
    import keras

    result = {
        "backend": keras.backend.backend(), "jit": not args.no_jit, "patch": args.patch,
        "batch": args.batch, "content": args.content, "texture_weight": args.texture_weight,
        "steps_per_s": steps_per_s, "patches_per_s": steps_per_s * args.batch,
        "generator_gflops": gflops, "matmul_gflops": matmul, "ratio": gflops / matmul,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
    }
    if result["backend"] == "jax":
        import jax

        device = jax.devices()[0]
        result["device"] = str(device)
        stats = getattr(device, "memory_stats", lambda: None)() or {}
        if "peak_bytes_in_use" in stats:
            result["device_peak_mib"] = stats["peak_bytes_in_use"] / 2 ** 20
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value:.4g}" if isinstance(value, float) else f"{key:>20}: {value}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
