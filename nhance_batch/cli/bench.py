"""``nhance-batch bench``: enhancer GFLOP/s against the same run's float32 matmul GFLOP/s."""

from __future__ import annotations

import json

import click

from nhance_batch.cli.common import config_errors
from nhance_batch.cli.options import MODEL_CHOICE


def _size(ctx, param, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 320x180") from None
    if width < 1 or height < 1:
        raise click.BadParameter("width and height must be positive")
    return width, height


@click.command("bench")
@click.option("--size", default="320x180", callback=_size, metavar="WxH", help="Frame size.")
@click.option("--batch", default=0, type=click.IntRange(min=0),
              help="Frames per forward pass (0: the autotuned batch size).")
@click.option("--jit", type=click.Choice(["auto", "on", "off"]), default="auto",
              help="XLA on, off (TensorFlow graph mode), or the faster one measured here.")
@click.option("--autotune-only", is_flag=True,
              help="Only decide (or read from the cache) the path for this size, print it.")
@click.option("--precision", type=click.Choice(["float32", "bfloat16", "float16"]),
              default="float32", help="Compute type of the convolutions.")
@click.option("--threads", default=0, type=click.IntRange(min=0),
              help="Math threads (0: all cores).")
@click.option("--rounds", default=3, type=click.IntRange(min=1), help="Timed rounds of each.")
@click.option("--random-weights", is_flag=True, help="Time random weights (no model files needed).")
@MODEL_CHOICE
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_errors
def bench(size, batch, jit, autotune_only, precision, threads, rounds, random_weights,
          model_name, model_path, as_json) -> None:
    """Time the enhancer after warm-up on the path autotuned for this machine (or the one
    --jit/--batch fix): GFLOP/s (2 x 399,744 FLOP per pixel), the same run's float32 matmul
    GFLOP/s (2048^3, the backend's default kernels) and their ratio."""
    from nhance_batch.model.speed import autotune_only as decide_only
    from nhance_batch.model.speed import run_bench
    from nhance_batch.config import ModelConfig

    config = ModelConfig(name=model_name, path=model_path, precision=precision, threads=threads,
                         jit=jit, batch_size=batch)
    if autotune_only:
        decision = decide_only(size[0], size[1], config, use_random_weights=random_weights)
        if as_json:
            click.echo(json.dumps(decision, indent=2))
        else:
            click.echo(f"{size[0]}x{size[1]} {precision}: {decision['path']}, batch "
                       f"{decision['batch_size']} ({decision['source']})")
        return
    result = run_bench(size[0], size[1], batch, config, rounds=rounds,
                       use_random_weights=random_weights)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    timings = ", ".join(f"{label} {seconds * 1e3:.1f}"
                        for label, seconds in result.autotune.get("seconds_per_frame", {}).items())
    click.echo(f"DPED {result.width}x{result.height} batch {result.batch} {result.precision} "
               f"[{result.weights}]\n"
               f"  path {result.path}, batch {result.batch} ({result.path_source}"
               + (f"; ms per frame on the timing crop: {timings}" if timings else "") + ")\n"
               f"  on {result.device}, {result.backend}\n"
               f"  {result.fps:.2f} frames/s, {result.model_gflops:.1f} GFLOP/s\n"
               f"  float32 matmul {result.matmul_gflops:.1f} GFLOP/s\n"
               f"  ratio {result.ratio:.3f}")
