"""``nhance-batch run`` and ``nhance-batch resume``: the batch job over a folder of videos."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nhance_batch.cli.common import (CONFIG_ERROR_EXIT, load_job_manifest, model_options,
                                     parse_storage, storage_option)



def run_options(fn):
    """The job's processing options, shared by run and resume."""
    options = [
        click.option("--chunk-frames", type=click.IntRange(min=0), default=0,
                     help="Frames per chunk (the unit of work); 0 sizes them to the video: as "
                          "many as fit 2 GiB of enhancer memory (NHANCE_CHUNK_MEMORY), "
                          "1 to 256."),
        click.option("--overlap", type=click.IntRange(min=0), default=None,
                     help="Context frames decoded on each side of a chunk "
                          "[default: the temporal radius]."),
        click.option("--temporal-radius", type=click.IntRange(min=0), default=None,
                     help="Frames each side over which the colour gain is smoothed; 0 turns "
                          "stabilisation off [default: 3]."),
        click.option("--lossless", is_flag=True,
                     help="Encode losslessly (FFV1): decoded output frames equal the "
                          "enhancer's output exactly."),
        click.option("--codec", default=None,
                     help="Video encoder (libx264, libx265, h264_nvenc...), or auto: a hardware "
                          "encoder (NVENC) when one works on this machine, else libx264, with "
                          "a note [default: libx264]."),
        click.option("--crf", type=click.IntRange(min=0, max=63), default=None,
                     help="Constant rate factor [default: 18]."),
        click.option("--preset", default=None, help="Encoder preset [default: medium]."),
        click.option("--address", envvar="RAY_ADDRESS", default=None,
                     help="Ray cluster to join (or RAY_ADDRESS); none starts a local Ray."),
        click.option("--workers", type=click.IntRange(min=0), default=0,
                     help="Enhancer actors (0: one per GPU, or one on a CPU-only machine, "
                          "with all cores)."),
        click.option("--max-retries", type=click.IntRange(min=0), default=2,
                     help="Retries of a failed chunk within a run."),
        click.option("--threads", type=click.IntRange(min=0), default=0,
                     help="Math threads per CPU enhancer actor (0: its share of the cores)."),
        click.option("--precision", type=click.Choice(["float32", "bfloat16", "float16"]),
                     default=None,
                     help="Compute type of the convolutions; float32 reproduces the published "
                          "model exactly, 16-bit is faster where the machine has native "
                          "16-bit math [default: float32]."),
        click.option("--jit", type=click.Choice(["auto", "on", "off"]), default=None,
                     help="XLA on, off (TensorFlow graph mode), or auto: the faster one "
                          "measured on this machine, cached [default: auto]."),
        click.option("--dashboard", is_flag=True,
                     help="Start the embedded Ray's dashboard (off: faster start, less "
                          "memory)."),
        click.option("--gpus-per-worker", type=click.FloatRange(min=0, min_open=True),
                     default=None,
                     help="GPUs each enhancer actor reserves on a cluster with GPUs; a "
                          "fraction (0.5) puts several actors on one GPU [default: 1]."),
        click.option("--previews", is_flag=True,
                     help="Also write a browser-playable H.264 preview of each output under "
                          "OUTPUT/_nhance/preview/."),
        click.option("--max-pixels", default=None, metavar="WxH|N",
                     help="Refuse videos whose frames have more pixels [default: 8192x8192]."),
        click.option("--max-frames", type=click.IntRange(min=1), default=None,
                     help="Refuse videos of more frames [default: 10000000]."),
        click.option("--task-timeout", type=click.FloatRange(min=0), default=None,
                     help="Seconds after which a hung decode or encode task is ended and "
                          "retried (0: no limit) [default: 900]."),
        storage_option,
        click.option("--executor", type=click.Choice(["ray", "sequential"]), default="ray",
                     help="Run on Ray, or everything in this process, one chunk at a time."),
        click.option("--manifest", default=None,
                     help="Manifest location [default: OUTPUT/_nhance/manifest.parquet]."),
        click.option("--force", is_flag=True,
                     help="Take over from another live driver, or redo a job whose settings "
                          "changed."),
        click.option("--keep-parts", is_flag=True,
                     help="Keep the encoded chunk parts after their video is committed."),
        click.option("--summary-json", type=click.Path(path_type=Path), default=None,
                     help="Also write the run's summary as JSON to this file."),
        model_options,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_config(input_spec: str, output: str, *, model_name="iphone", storage_options=None,
                 **options):
    """The RunConfig from the command line's values (bad values -> a usage error)."""
    from nhance_batch.config import ConfigError, run_config

    options = {k: v for k, v in options.items() if k in _SETTINGS}
    try:
        return run_config(input_spec, output, model=model_name,
                          storage_options=storage_options if isinstance(storage_options, dict)
                          else parse_storage(storage_options), **options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


#: the options that are job settings (the keywords of nhance_batch.config.run_config)
_SETTINGS = frozenset({
    "model_path", "precision", "jit", "chunk_frames", "overlap", "temporal_radius",
    "lossless", "codec", "crf", "preset", "address", "workers", "max_retries",
    "gpus_per_worker", "threads", "max_pixels", "max_frames", "task_timeout", "previews",
    "dashboard", "hdr", "strength"})


def execute(config, *, executor_name: str, manifest: str | None, force: bool, keep_parts: bool,
            summary_json: Path | None) -> None:
    """Run the job and exit with 0 (all done), 1 (some failed) or 2 (configuration)."""
    from nhance_batch.pipeline.job import configuration_errors, run_job
    from nhance_batch.pipeline.progress import RichReporter, print_summary

    reporter = RichReporter()
    try:
        summary = run_job(config, executor=executor_name, manifest=manifest, force=force,
                          keep_parts=keep_parts, reporter=reporter)
    except configuration_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    except KeyboardInterrupt:
        click.echo("interrupted: finished chunks are recorded; run again to resume", err=True)
        raise SystemExit(130) from None
    print_summary(summary, reporter.console)
    if summary_json:
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    raise SystemExit(summary.exit_code)


def _config_from_spec(spec_path: Path, input_spec: str | None, output: str | None,
                      options: dict):
    """The RunConfig of a job spec; options given on the command line override it."""
    from click.core import ParameterSource

    from nhance_batch.jobspec import SpecError, load_spec

    ctx = click.get_current_context()
    explicit = {("model" if name == "model_name" else name): value
                for name, value in options.items()
                if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                      ParameterSource.ENVIRONMENT)}
    if "storage_options" in explicit:
        explicit["storage_options"] = parse_storage(explicit["storage_options"])
    explicit = {k: v for k, v in explicit.items()
                if k in _SETTINGS or k in ("model", "storage_options")}
    try:
        return load_spec(spec_path).to_run_config(input=input_spec, output=output, **explicit)
    except SpecError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc


@click.command("run")
@click.argument("input_spec", metavar="INPUT", required=False)
@click.argument("output", metavar="OUTPUT", required=False)
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="A job spec (TOML; see jobs/example.toml) instead of INPUT OUTPUT and the "
                   "options; options given here override its values.")
@run_options
@click.option("--dry-run", is_flag=True,
              help="Print the job's plan (as `nhance-batch plan`: frames, chunks, TFLOP, inputs "
                   "that would fail, time and size estimates) instead of running it; exits 0 "
                   "when every input is usable, 1 when some are not.")
def run(input_spec: str | None, output: str | None, spec_path: Path | None, executor: str,
        manifest, force, keep_parts, summary_json, dry_run: bool = False, **options) -> None:
    """Enhance every video in INPUT (a file, a folder searched recursively, or a glob) into
    OUTPUT/<path relative to INPUT>, keeping frames, timestamps, audio, subtitles, rotation
    and colour tags. Running it again resumes: finished chunks and videos are not redone.
    With --spec, the job comes from a spec file (the same one `nhance-batch submit` sends to
    a cluster).

    Exit code 0 when every video succeeded, 1 when some failed, 2 for usage or configuration
    errors."""
    if spec_path is not None:
        config = _config_from_spec(spec_path, input_spec, output, options)
    else:
        if input_spec is None or output is None:
            raise click.UsageError("give INPUT and OUTPUT, or a job spec with --spec SPEC")
        config = build_config(input_spec, output, **options)
    if dry_run:
        from nhance_batch.cli.plan import report_plan

        report_plan(config)
    execute(config, executor_name=executor, manifest=manifest, force=force,
            keep_parts=keep_parts, summary_json=summary_json)


@click.command("resume")
@click.argument("output", metavar="OUTPUT")
@click.option("--manifest", default=None,
              help="Manifest location [default: OUTPUT/_nhance/manifest.parquet].")
@click.option("--address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster to join (or RAY_ADDRESS); none starts a local Ray.")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Enhancer actors (0: one per GPU, or one on a CPU-only machine).")
@click.option("--max-retries", type=click.IntRange(min=0), default=2,
              help="Retries of a failed chunk within a run.")
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="Math threads per CPU enhancer actor (0: its share of the cores).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=None,
              help="GPUs each enhancer actor reserves [default: 1].")
@click.option("--executor", type=click.Choice(["ray", "sequential"]), default="ray",
              help="Run on Ray, or everything in this process.")
@click.option("--force", is_flag=True, help="Take over from another live driver.")
@click.option("--keep-parts", is_flag=True, help="Keep the encoded chunk parts.")
@click.option("--summary-json", type=click.Path(path_type=Path), default=None,
              help="Also write the run's summary as JSON to this file.")
@storage_option
def resume(output: str, manifest, address, workers, max_retries, threads, gpus_per_worker,
           executor, force, keep_parts, summary_json, storage_options) -> None:
    """Resume the job in OUTPUT with the input and settings its manifest recorded: committed
    chunks whose parts still verify are kept, the rest is redone, missing videos assembled."""
    options = parse_storage(storage_options)
    job = load_job_manifest(output, manifest, options).job
    encode = job["encode"]
    lossless = encode["lossless"]
    config = build_config(
        job["input"], output, model_name=job["model"],
        model_path=Path(job["model_path"]) if job.get("model_path") else None,
        precision=job.get("precision"),
        chunk_frames=job["chunk_frames"], overlap=job["overlap"],
        temporal_radius=job["temporal_radius"], lossless=lossless,
        codec=None if lossless else encode["codec"],
        crf=None if lossless else encode["crf"],
        preset=None if lossless else encode["preset"],
        address=address, workers=workers, max_retries=max_retries, threads=threads,
        gpus_per_worker=gpus_per_worker, previews=bool(job.get("previews")),
        hdr=encode.get("hdr"), strength=job.get("strength"), storage_options=options)
    execute(config, executor_name=executor, manifest=manifest, force=force,
            keep_parts=keep_parts, summary_json=summary_json)
