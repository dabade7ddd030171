"""``nhance-batch models``: the registry's models and where each one resolves."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--download/--no-download", default=False,
              help="Download models that are not found locally.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models(ctx: click.Context, download: bool, as_json: bool) -> None:
    """List the models and where each was found (NHANCE_MODELS, the cache, or not yet), then
    the user's own fine-tuned models with their validation metrics. With --download, exits 1
    when a model could not be downloaded."""
    from nhance_batch.model.registry import (ModelError, default_model, list_user_models,
                                             load_registry, read_user_model, resolve,
                                             user_models_dir)

    rows = []
    for name, spec in sorted(load_registry()[1].items()):
        try:
            found = resolve(name, download=download)
            where, source, error = str(found.prefix), found.source, None
        except ModelError as exc:
            where, source, error = None, None, str(exc)
        rows.append({"name": name, "default": name == default_model(), "kind": "published",
                     "description": spec.description, "path": where, "source": source,
                     "error": error})
    published = {row["name"] for row in rows}
    for name in list_user_models():
        if name in published:  # a published name always wins; such a folder is unreachable
            continue
        folder = user_models_dir() / name
        try:
            info = read_user_model(folder)
            found = resolve(name)
            where, source, error = str(found.prefix), found.source, None
        except ModelError as exc:
            info, where, source, error = {}, None, None, str(exc)
        metrics = info.get("metrics", {})
        rows.append({"name": name, "default": False, "kind": "user",
                     "description": f"fine-tuned from {info.get('base', {}).get('name', '?')} "
                                    f"({info.get('steps', '?')} steps)",
                     "path": where, "source": source, "error": error,
                     "base": info.get("base", {}).get("name"), "steps": info.get("steps"),
                     "content": info.get("content", {}).get("network"),
                     "metrics": metrics})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_rows(rows)
    failed = [row["name"] for row in rows if download and row["kind"] == "published"
              and row["error"]]
    if failed:
        click.echo(f"error: {', '.join(failed)} could not be downloaded (see above)", err=True)
        ctx.exit(1)


def _print_rows(rows: list[dict]) -> None:
    for row in rows:
        mark = "*" if row["default"] else " "
        status = f"{row['source']}: {row['path']}" if row["path"] else f"unresolved: {row['error']}"
        if row["kind"] == "user" and row.get("metrics"):
            status += "  " + _metrics_text(row["metrics"])
        click.echo(f"{mark} {row['name']:<11} {status}")


def _metrics_text(metrics: dict) -> str:
    def psnr(key: str) -> str:
        value = (metrics.get(key) or {}).get("psnr")
        return "n/a" if value is None else f"{value:.2f}"

    return (f"(validation PSNR dB: input {psnr('identity')}, base {psnr('base')}, "
            f"fine-tuned {psnr('finetuned')})")
