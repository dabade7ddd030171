"""Error handling and parsing shared by the commands (the options: :mod:`.options`)."""

from __future__ import annotations

import functools

import click

CONFIG_ERROR_EXIT = 2


def config_errors(fn):
    """Turn configuration errors (unknown model, bad checksum...) into a message and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from nhance_batch.images import ImageError
        from nhance_batch.model.registry import ModelError

        try:
            return fn(*args, **kwargs)
        except (ModelError, ImageError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(CONFIG_ERROR_EXIT) from exc

    return wrapper


def parse_storage(text: str | None) -> dict:
    """``--storage-options`` JSON -> dict (usage error on bad JSON, without echoing it)."""
    from nhance_batch.storage import StorageError, install_log_redaction, parse_storage_options

    try:
        options = parse_storage_options(text)
    except StorageError as exc:
        raise click.UsageError(str(exc)) from exc
    install_log_redaction(options)
    return options
