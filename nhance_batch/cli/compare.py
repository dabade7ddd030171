"""``nhance-batch compare``: before/after comparison videos, of one pair or of a whole job."""

from __future__ import annotations

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT
from nhance_batch.cli.common import parse_storage
from nhance_batch.cli.options import STORAGE

_MODES = ("split", "swipe", "side-by-side")


@click.command("compare")
@click.argument("paths", nargs=-1, required=True, metavar="BEFORE AFTER OUT.mp4 | OUTPUT")
@click.option("--mode", type=click.Choice(_MODES), default="split",
              help="split: BEFORE left of the divider, AFTER right; swipe: the divider moves "
                   "left to right and back every --period seconds; side-by-side: both at "
                   "full size (2W x H).")
@click.option("--position", type=click.FloatRange(0.0, 1.0), default=0.5, metavar="P",
              help="Split mode: the divider at P times the width.")
@click.option("--period", type=click.FloatRange(min=0.0, min_open=True), default=4.0,
              metavar="S", help="Swipe mode: seconds for the divider to go across and back.")
@click.option("--labels/--no-labels", default=True, help="Small 'before' and 'after' labels.")
@click.option("--manifest", default=None,
              help="Job mode: manifest location [default: OUTPUT/_nhance/manifest.parquet].")
@STORAGE
def compare(paths: tuple[str, ...], mode: str, position: float, period: float, labels: bool,
            manifest: str | None, storage_options: str | None) -> None:
    """Render a comparison video (H.264 MP4 any browser plays).

    With BEFORE AFTER OUT.mp4: compare two videos with the same frame count and size (exit 2
    with the reason when they differ). The comparison has AFTER's frames and timestamps and
    BEFORE's audio; rotation is applied to the pixels. With OUTPUT: every done video of the job
    in OUTPUT, into OUTPUT/_nhance/compare/<relative>.<mode>.mp4 (exit 1 if some fail).
    """
    from nhance_batch.analysis.compare import CompareError, compare_job, render_compare
    from nhance_batch.media import MediaError

    if len(paths) == 3:
        before, after, out = paths
        try:
            render_compare(before, after, out, mode=mode, position=position, period=period,
                           labels=labels)
        except CompareError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(CONFIG_ERROR_EXIT) from exc
        except MediaError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from exc
        click.echo(out)
        return
    if len(paths) != 1:
        raise click.UsageError("give BEFORE AFTER OUT.mp4, or the OUTPUT folder of a job")
    from nhance_batch.state.manifest import ManifestError
    from nhance_batch.storage import StorageError

    failures: list[tuple[str, str]] = []
    try:
        written = compare_job(paths[0], mode=mode, storage_options=parse_storage(storage_options),
                              position=position, period=period, labels=labels,
                              manifest=manifest,
                              on_error=lambda video, reason: failures.append((video, reason)))
    except (ManifestError, StorageError, CompareError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    for path in written:
        click.echo(path)
    for video, reason in failures:
        click.echo(f"failed: {video}: {reason}", err=True)
    if not written and not failures:
        click.echo("no done videos to compare", err=True)
    if failures:
        raise SystemExit(1)
