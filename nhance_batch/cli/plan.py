"""``nhance-batch plan``: what a job would do and cost, before it runs (also ``run --dry-run``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT
from nhance_batch.cli.options import (CHUNKING, CLUSTER, ENCODING, LIMITS, MODEL, STORAGE,
                                      compose, config_from_options)

if TYPE_CHECKING:
    from nhance_batch.config import RunConfig
    from nhance_batch.estimate import JobPlan

#: what shapes the estimate: plan runs no job, so of the cluster options only the enhancer's
#: threads (its calibration) count, and the strength, previews, the task timeout and strict
#: change nothing it estimates
PLAN_OPTIONS = compose(MODEL.without("strength"), CHUNKING, ENCODING.without("previews"),
                       CLUSTER.only("threads"), LIMITS.without("task_timeout", "strict"),
                       STORAGE)


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _human_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _rates(sizes: list) -> str:
    """``0.52 Mpx/s at 256x144, 0.41 at 640x360``."""
    parts = [f"{rate:.3f}{' Mpx/s' if i == 0 else ''} at {w}x{h}"
             for i, (w, h, rate) in enumerate(sizes)]
    return ", ".join(parts)


def make_plan(config: RunConfig, *, gpus: int = 1, gpu_kind: str | None = None,
              calibrate: bool = True, recalibrate: bool = False) -> JobPlan:
    """The :class:`~nhance_batch.estimate.JobPlan` of a RunConfig (calibrating when asked)."""
    from nhance_batch.estimate import plan_job

    calibration = None
    if calibrate:
        from nhance_batch.estimate.calibration import load_or_calibrate

        def calibration():  # only once some input is usable
            return load_or_calibrate(config.model, config.encode, refresh=recalibrate)
    return plan_job(config.input, model=config.model, chunk=config.chunk, encode=config.encode,
                    limits=config.limits, storage_options=config.storage_options, gpus=gpus,
                    calibration=calibration, gpu_kind=gpu_kind, enhance_sample=calibrate)


def print_plan(plan: JobPlan, console=None) -> None:
    """The plan as tables: per video, the totals, the estimates and where their rates came
    from."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="plan")
    for name, justify in (("input", "left"), ("frames", "right"), ("size", "right"),
                          ("chunks", "right"), ("TFLOP", "right"), ("output", "right"),
                          ("here", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for v in plan.videos:
        if v.error:
            table.add_row(v.input, "[red]fails[/red]", "", "", "", "", "")
        else:
            table.add_row(v.input, str(v.frames), f"{v.width}x{v.height}", str(v.chunks),
                          f"{v.tflop:.3f}", _human_bytes(v.output_bytes),
                          _human_seconds(v.seconds_here))
    console.print(table)
    for v in plan.videos:  # whole lines, never folded, so that paths stay copyable
        if v.error:
            console.print(f"would fail: {v.error}", soft_wrap=True, markup=False,
                          highlight=False)
    total = plan.total
    console.print(f"total: {total['usable']} of {total['videos']} videos usable, "
                  f"{total['frames']} frames in {total['chunks']} chunks, {total['tflop']:.3f} "
                  f"TFLOP ({total['enhanced_frames']} frames enhanced, context included), "
                  f"output about {_human_bytes(total['output_bytes'])} "
                  f"({total['output_bytes_basis']})")
    if plan.calibration is not None:
        _print_here(console, total, plan.calibration)
    for est in plan.gpu_estimates:
        _print_gpu(console, est)
    for note in plan.notes:
        console.print(f"note: {note}")


def _print_here(console, total: dict, cal: dict) -> None:
    how = "cached" if cal["cached"] else f"measured now in {cal['seconds']:.1f} s"
    startup = sum((total["startup_here"] or {}).values())
    machine = cal["machine"]
    console.print(f"here: about {_human_seconds(total['seconds_here'])}, start-up "
                  f"{_human_seconds(startup)} included (calibration {how}: enhancer "
                  f"{_rates(cal['enhance_sizes'])}, actor start {cal['startup_s']:.1f} s, "
                  f"first call per frame size {cal['shape_s']:.1f} s, "
                  f"decode {cal['decode_mpx_s']:.1f} Mpx/s, encode "
                  f"{cal['encode_mpx_s']:.1f} Mpx/s; {machine['cpu']}, "
                  f"{machine['cores']} cores, {machine['backend']}"
                  f"{', GPU ' + machine['gpu'] if machine['gpu'] else ''})")


def _print_gpu(console, est: dict) -> None:
    encode = ("" if est["encode_seconds"] is None
              else f", the nodes' CPUs encode in {_human_seconds(est['encode_seconds'])}")
    console.print(f"on {est['gpus']} x {est['kind']} ({est['precision']}): about "
                  f"{_human_seconds(est['seconds'])} (start-up "
                  f"{_human_seconds(est['startup_seconds'])}, the GPU actor's assumed; "
                  f"{est['chunks']} chunks on {est['gpus_used']} GPUs, enhancer "
                  f"{_human_seconds(est['enhance_seconds'])}{encode}; "
                  f"{est['bound']}-bound)")
    for source in est["sources"]:
        console.print(f"  rate: {source}")


def report_plan(config: RunConfig, *, gpus: int = 1, gpu_kind: str | None = None,
                as_json: bool = False, calibrate: bool = True,
                recalibrate: bool = False) -> int:
    """Plan ``config``'s job and print it; the exit code: 0 (every input usable), 1 (some
    are not) or 2 (configuration: no such input, unknown GPU kind, no model)."""
    from nhance_batch.model.backend import BackendError
    from nhance_batch.model.registry import ModelError

    try:
        plan = make_plan(config, gpus=gpus, gpu_kind=gpu_kind, calibrate=calibrate,
                         recalibrate=recalibrate)
    except (FileNotFoundError, ValueError, ModelError, BackendError) as exc:
        click.echo(f"error: {exc}", err=True)
        return CONFIG_ERROR_EXIT
    if as_json:
        click.echo(json.dumps(plan.as_dict(), indent=2, default=str))
    else:
        print_plan(plan)
    return plan.exit_code


@click.command("plan")
@click.argument("input_spec", metavar="INPUT")
@click.option("--gpus", type=click.IntRange(min=1), default=1,
              help="GPUs the GPU estimates assume (one node of the measured shape each).")
@click.option("--gpu-kind", default=None,
              help="Estimate for this GPU kind only [default: every kind with measured rates].")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--no-calibrate", is_flag=True,
              help="No estimate for this machine (skips the calibration, about a minute on a "
                   "2-core CPU the first time; cached after).")
@click.option("--recalibrate", is_flag=True,
              help="Measure this machine again even when a calibration is cached.")
@PLAN_OPTIONS
@click.pass_context
def plan(ctx: click.Context, input_spec: str, gpus: int, gpu_kind: str | None, as_json: bool,
         no_calibrate: bool, recalibrate: bool, **options) -> None:
    """Show what `nhance-batch run INPUT ...` would do, without running it: per video its
    frames, size, chunks and TFLOP, the inputs that would fail (with their errors), the output
    size, and the time on this machine (from a short calibration, cached per machine and
    model) and on --gpus GPUs of each kind in the package's table of measured rates (each with
    its source). Probes every input without decoding it.

    Exit code 0 when every input is usable, 1 when some are not, 2 for usage or configuration
    errors."""
    config = config_from_options(input_spec, "nhance-plan", options)
    ctx.exit(report_plan(config, gpus=gpus, gpu_kind=gpu_kind, as_json=as_json,
                         calibrate=not no_calibrate, recalibrate=recalibrate))
