"""``nhance-batch status``: a job's progress from its manifest (works while the job runs)."""

from __future__ import annotations

import json

import click

from nhance_batch.cli.common import load_job_manifest
from nhance_batch.cli.run import parse_storage, storage_option


def _driver_alive(output: str, options: dict) -> bool:
    from nhance_batch import storage
    from nhance_batch.state.lease import live_holder
    from nhance_batch.pipeline.driver import STATE_DIR

    return live_holder(storage.join(output, STATE_DIR, "lease.json"), options) is not None


@click.command("status")
@click.argument("output", metavar="OUTPUT")
@click.option("--manifest", default=None,
              help="Manifest location [default: OUTPUT/_nhance/manifest.parquet].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@storage_option
def status(output: str, manifest: str | None, as_json: bool, storage_options: str | None) -> None:
    """Per video: status (pending, running, done, failed), chunks done/total, frames, error;
    and the job's progress and ETA. Exit code 2 when OUTPUT holds no job."""
    from nhance_batch.state.manifest import summarize_for_status

    options = parse_storage(storage_options)
    report = summarize_for_status(load_job_manifest(output, manifest, options))
    alive = _driver_alive(output, options)
    report["driver_alive"] = alive
    if not alive:  # a driver that died mid-run left "running" rows: nothing runs them now
        for video in report["videos"]:
            if video["status"] == "running":
                video["status"] = "pending"
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

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
