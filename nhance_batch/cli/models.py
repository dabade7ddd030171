"""``nhance-batch models``: the registry's models and where each one resolves."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--download/--no-download", default=False,
              help="Download models that are not found locally.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(download: bool, as_json: bool) -> None:
    """List the models and where each was found (NHANCE_MODELS, the cache, or not yet)."""
    from nhance_batch.model.registry import ModelError, default_model, load_registry, resolve

    rows = []
    for name, spec in sorted(load_registry()[1].items()):
        try:
            found = resolve(name, download=download)
            where, source, error = str(found.prefix), found.source, None
        except ModelError as exc:
            where, source, error = None, None, str(exc)
        rows.append({"name": name, "default": name == default_model(),
                     "description": spec.description, "path": where, "source": source,
                     "error": error})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "*" if row["default"] else " "
        status = f"{row['source']}: {row['path']}" if row["path"] else f"unresolved: {row['error']}"
        click.echo(f"{mark} {row['name']:<11} {status}")
