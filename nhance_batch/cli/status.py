"""``nhance-batch status``: a job's progress from its manifest (works while the job runs)."""

from __future__ import annotations

import json

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT
from nhance_batch.cli.common import parse_storage
from nhance_batch.cli.options import STORAGE


@click.command("status")
@click.argument("output", metavar="OUTPUT")
@click.option("--manifest", default=None,
              help="Manifest location [default: OUTPUT/_nhance/manifest.parquet].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@STORAGE
def status(output: str, manifest: str | None, as_json: bool, storage_options: str | None) -> None:
    """Per video: status (pending, running, done, failed), chunks done/total, frames, error;
    and the job's progress and ETA. Exit code 2 when OUTPUT holds no job."""
    from nhance_batch.state.manifest import ManifestError
    from nhance_batch.state.status import status_document
    from nhance_batch.storage import StorageError

    options = parse_storage(storage_options)
    try:
        report = status_document(output, manifest, options)
    except (ManifestError, StorageError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    if report is None:
        click.echo(f"error: no job manifest in {output}; start one with `nhance-batch run`",
                   err=True)
        raise SystemExit(CONFIG_ERROR_EXIT)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    alive = report["driver_alive"]
    progress = report["progress"]
    table = Table(title=f"{output}: {progress['videos_done']}/{progress['videos_total']} videos "
                        f"done, {progress['videos_failed']} failed")
    for column in ("video", "status", "chunks", "frames", "error / note"):
        table.add_column(column, overflow="fold")
    for video in report["videos"]:
        table.add_row(video["input"], video["status"],
                      f"{video['chunks_done']}/{video['chunks_total']}",
                      str(video["frames"] or ""), video["error"] or video.get("note") or "")
    console = Console()
    console.print(table)
    eta = report.get("eta_seconds")
    console.print(f"frames {progress['frames_done']}/{progress['frames_total']}, chunks "
                  f"{progress['chunks_done']}/{progress['chunks_total']}; driver "
                  f"{'running' if alive else 'not running'}"
                  + (f"; ETA {eta:.0f} s" if eta is not None and alive else ""))
