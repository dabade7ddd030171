"""``nhance-batch run`` and ``nhance-batch resume``: the batch job over a folder of videos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT
from nhance_batch.cli.options import (CHUNKING, CLUSTER, ENCODING, JOB_CONTROL, LIMITS, MODEL,
                                      STORAGE, compose, config_from_options, job_values)

if TYPE_CHECKING:
    from nhance_batch.config import RunConfig

#: everything a run is given, its settings and where and how it runs
RUN_OPTIONS = compose(MODEL, CHUNKING, ENCODING, CLUSTER, LIMITS, STORAGE, JOB_CONTROL)
#: what a resume may change: the manifest fixes the job's settings, and the embedded Ray's
#: dashboard is a `run` option only
RESUME_OPTIONS = compose(CLUSTER.without("dashboard"), STORAGE, JOB_CONTROL)


def execute(config: RunConfig, *, executor_name: str, manifest: str | None, force: bool,
            keep_parts: bool, summary_json: Path | None) -> int:
    """Run the job; its exit code: 0 (all done), 1 (some failed), 2 (configuration) or 130
    (interrupted)."""
    from nhance_batch.pipeline.driver import configuration_errors, run_job
    from nhance_batch.pipeline.progress import RichReporter, print_summary

    reporter = RichReporter()
    try:
        summary = run_job(config, executor=executor_name, manifest=manifest, force=force,
                          keep_parts=keep_parts, reporter=reporter)
    except configuration_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        return CONFIG_ERROR_EXIT
    except KeyboardInterrupt:
        click.echo("interrupted: finished chunks are recorded; run again to resume", err=True)
        return 130
    if summary.already_done:
        _print_already_done(summary, config.output)
    else:
        print_summary(summary, reporter.console)
    if summary_json:
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2, default=str))
    return summary.exit_code


def _print_already_done(summary, output: str) -> None:
    """What a rerun of a finished job says: that, and where its outputs are."""
    count = len(summary.videos)
    click.echo(f"already done: {count} video{'s' if count != 1 else ''} in {output}, "
               "finished and unchanged since; nothing to do. Outputs:", err=True)
    for video in summary.videos:
        click.echo(f"  {video.output}  ({video.frames} frames, from {video.input})", err=True)


def _recorded_settings(output: str, manifest: str | None, options: dict) -> dict:
    """The settings recorded for the job in OUTPUT (or in the manifest at ``manifest``);
    exits 2 when there is no job or its manifest cannot be read."""
    from nhance_batch.state.jobstate import read_job_settings
    from nhance_batch.state.layout import manifest_url
    from nhance_batch.state.manifest import ManifestError
    from nhance_batch.storage import StorageError

    url = manifest_url(output, manifest)
    try:
        settings = read_job_settings(url, options)
    except (ManifestError, StorageError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    if settings is None:
        click.echo(f"error: no job manifest at {url}; start one with `nhance-batch run`",
                   err=True)
        raise SystemExit(CONFIG_ERROR_EXIT)
    return settings


@click.command("run")
@click.argument("input_spec", metavar="INPUT", required=False)
@click.argument("output", metavar="OUTPUT", required=False)
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="A job spec (TOML; see jobs/example.toml) instead of INPUT OUTPUT and the "
                   "options; options given here override its values.")
@RUN_OPTIONS
@click.option("--dry-run", is_flag=True,
              help="Print the job's plan (as `nhance-batch plan`: frames, chunks, TFLOP, inputs "
                   "that would fail, time and size estimates) instead of running it; exits 0 "
                   "when every input is usable, 1 when some are not.")
@click.pass_context
def run(ctx: click.Context, input_spec: str | None, output: str | None,
        spec_path: Path | None, executor: str, manifest, force, keep_parts, summary_json,
        dry_run: bool = False, **options) -> None:
    """Enhance every video in INPUT (a file, a folder searched recursively, or a glob) into
    OUTPUT/<path relative to INPUT>, keeping frames, timestamps, audio, subtitles, rotation
    and colour tags. Running it again resumes: finished chunks and videos are not redone.
    With --spec, the job comes from a spec file (the same one `nhance-batch submit` sends to
    a cluster).

    Exit code 0 when every video succeeded, 1 when some failed, 2 for usage or configuration
    errors."""
    config = config_from_options(input_spec, output, options, spec=spec_path)
    if dry_run:
        from nhance_batch.cli.plan import report_plan

        code = report_plan(config)
    else:
        code = execute(config, executor_name=executor, manifest=manifest, force=force,
                       keep_parts=keep_parts, summary_json=summary_json)
    ctx.exit(code)


@click.command("resume")
@click.argument("output", metavar="OUTPUT")
@RESUME_OPTIONS
@click.pass_context
def resume(ctx: click.Context, output: str, executor: str, manifest, force, keep_parts,
           summary_json, **options) -> None:
    """Resume the job in OUTPUT with the input and settings its manifest recorded: committed
    chunks whose parts still verify are kept, the rest is redone, missing videos assembled."""
    from nhance_batch.config import ConfigError
    from nhance_batch.state.jobstate import run_config_from_settings

    overrides = job_values(options)
    recorded = _recorded_settings(output, manifest, overrides["storage_options"])
    try:
        config = run_config_from_settings(recorded, output=output, overrides=overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.exit(execute(config, executor_name=executor, manifest=manifest, force=force,
                     keep_parts=keep_parts, summary_json=summary_json))
