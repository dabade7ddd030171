"""``nhance-batch run`` and ``nhance-batch resume``: the batch job over a folder of videos."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT, model_options

DEFAULT_CHUNK_FRAMES = 64


def run_options(fn):
    """The job's processing options, shared by run and resume."""
    options = [
        click.option("--chunk-frames", type=click.IntRange(min=1), default=DEFAULT_CHUNK_FRAMES,
                     help="Frames per chunk (the unit of work)."),
        click.option("--overlap", type=click.IntRange(min=0), default=None,
                     help="Context frames decoded on each side of a chunk "
                          "[default: the temporal radius]."),
        click.option("--temporal-radius", type=click.IntRange(min=0), default=None,
                     help="Frames each side over which the colour gain is smoothed; 0 turns "
                          "stabilisation off [default: 3]."),
        click.option("--lossless", is_flag=True,
                     help="Encode losslessly (FFV1): decoded output frames equal the "
                          "enhancer's output exactly."),
        click.option("--codec", default=None, help="Video encoder [default: libx264]."),
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


def build_config(input_spec: str, output: str, *, model_name, model_path, chunk_frames, overlap,
                 temporal_radius, lossless, codec, crf, preset, address, workers, max_retries,
                 **_ignored):
    """The frozen RunConfig from the command line's values (usage errors -> BadParameter)."""
    from nhance_batch.config import (DEFAULT_TEMPORAL_RADIUS, ChunkConfig, ClusterConfig,
                                     EncodeConfig, ModelConfig, RunConfig)

    if lossless and (codec or crf is not None or preset):
        raise click.UsageError("--lossless cannot be combined with --codec, --crf or --preset")
    radius = DEFAULT_TEMPORAL_RADIUS if temporal_radius is None else temporal_radius
    if overlap is None:
        overlap = radius
    elif overlap < radius:
        raise click.UsageError(f"--overlap {overlap} is smaller than the temporal radius "
                               f"{radius}: chunks must carry at least R context frames")
    encode_defaults = EncodeConfig()
    return RunConfig(
        input=input_spec, output=output,
        model=ModelConfig(name=model_name, path=model_path),
        chunk=ChunkConfig(chunk_frames=chunk_frames, overlap=overlap),
        encode=EncodeConfig(codec=codec or encode_defaults.codec,
                            crf=encode_defaults.crf if crf is None else crf,
                            preset=preset or encode_defaults.preset, lossless=lossless),
        cluster=ClusterConfig(address=address, workers=workers, max_retries=max_retries),
        temporal_radius=radius)


def execute(config, *, executor_name: str, manifest: str | None, force: bool, keep_parts: bool,
            summary_json: Path | None) -> None:
    """Run the job and exit with 0 (all done), 1 (some failed) or 2 (configuration)."""
    from nhance_batch.lease import LeaseError
    from nhance_batch.pipeline.driver import Driver, JobConfigMismatch
    from nhance_batch.pipeline.progress import RichReporter, print_summary
    from nhance_batch.registry import ModelError, resolve

    try:
        resolve(config.model.name, config.model.path)  # fail fast, before any cluster work
    except ModelError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    if executor_name == "sequential":
        from nhance_batch.pipeline.executor import SequentialExecutor

        executor = SequentialExecutor(config.model)
    else:
        from nhance_batch.pipeline.ray_executor import RayExecutor

        executor = RayExecutor(config.model, config.cluster)
    reporter = RichReporter()
    driver = Driver(config, executor, reporter=reporter, manifest_path=manifest, force=force,
                    keep_parts=keep_parts)
    try:
        executor.start()
        summary = driver.run()
    except (JobConfigMismatch, LeaseError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    except KeyboardInterrupt:
        click.echo("interrupted: finished chunks are recorded; run again to resume", err=True)
        raise SystemExit(130) from None
    finally:
        executor.shutdown()
    print_summary(summary, reporter.console)
    if summary_json:
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    raise SystemExit(summary.exit_code)


@click.command("run")
@click.argument("input_spec", metavar="INPUT")
@click.argument("output", metavar="OUTPUT")
@run_options
def run(input_spec: str, output: str, executor: str, manifest, force, keep_parts, summary_json,
        **options) -> None:
    """Enhance every video in INPUT (a file, a folder searched recursively, or a glob) into
    OUTPUT/<path relative to INPUT>, keeping frames, timestamps, audio, subtitles, rotation
    and colour tags. Running it again resumes: finished chunks and videos are not redone.

    Exit code 0 when every video succeeded, 1 when some failed, 2 for usage or configuration
    errors."""
    try:
        config = build_config(input_spec, output, **options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
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
@click.option("--executor", type=click.Choice(["ray", "sequential"]), default="ray",
              help="Run on Ray, or everything in this process.")
@click.option("--force", is_flag=True, help="Take over from another live driver.")
@click.option("--keep-parts", is_flag=True, help="Keep the encoded chunk parts.")
@click.option("--summary-json", type=click.Path(path_type=Path), default=None,
              help="Also write the run's summary as JSON to this file.")
def resume(output: str, manifest, address, workers, max_retries, executor, force, keep_parts,
           summary_json) -> None:
    """Resume the job in OUTPUT with the input and settings its manifest recorded: committed
    chunks whose parts still verify are kept, the rest is redone, missing videos assembled."""
    import os

    from nhance_batch.manifest import ManifestError, load_manifest
    from nhance_batch.pipeline.driver import STATE_DIR

    path = manifest or os.path.join(output, STATE_DIR, "manifest.parquet")
    try:
        recorded = load_manifest(path)
    except ManifestError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    if recorded is None:
        click.echo(f"error: no job manifest at {path}; start one with `nhance-batch run`",
                   err=True)
        raise SystemExit(CONFIG_ERROR_EXIT)
    job = recorded.job
    encode = job["encode"]
    config = build_config(
        job["input"], output, model_name=job["model"],
        model_path=Path(job["model_path"]) if job.get("model_path") else None,
        chunk_frames=job["chunk_frames"], overlap=job["overlap"],
        temporal_radius=job["temporal_radius"], lossless=encode["lossless"],
        codec=None if encode["lossless"] else encode["codec"],
        crf=None if encode["lossless"] else encode["crf"],
        preset=None if encode["lossless"] else encode["preset"],
        address=address, workers=workers, max_retries=max_retries)
    execute(config, executor_name=executor, manifest=manifest, force=force,
            keep_parts=keep_parts, summary_json=summary_json)
