"""``nhance-batch report``: the job report, a self-contained HTML page."""

from __future__ import annotations

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT
from nhance_batch.cli.common import parse_storage
from nhance_batch.cli.options import STORAGE


@click.command("report")
@click.argument("output", metavar="OUTPUT")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the web browser.")
@click.option("--manifest", default=None,
              help="Manifest location [default: OUTPUT/_nhance/manifest.parquet].")
@STORAGE
def report(output: str, open_page: bool, manifest: str | None,
           storage_options: str | None) -> None:
    """Write OUTPUT/_nhance/report/index.html: per video, stills before and after, the
    per-frame gain before and after stabilisation, luminance histograms, metrics and errors;
    for the job, throughput, stage speeds, videos done and failed, and low-light videos against
    the others. Self-contained (pictures beside the page, nothing from the network). Exit 2
    when OUTPUT holds no job."""
    from nhance_batch.analysis.report import open_in_browser, write_report
    from nhance_batch.state.manifest import ManifestError
    from nhance_batch.storage import StorageError

    try:
        index = write_report(output, storage_options=parse_storage(storage_options),
                             manifest=manifest)
    except (ManifestError, StorageError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    click.echo(index)
    if open_page and not open_in_browser(index):
        click.echo("the report is in a store; download the report folder to open it", err=True)
