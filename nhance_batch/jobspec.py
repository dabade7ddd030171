"""Job specs: a batch job written down as a TOML file (see ``jobs/example.toml``).

The keys are the ``nhance-batch run`` options (``chunk_frames`` for ``--chunk-frames`` and so
on), so ``nhance-batch run --spec SPEC`` on a laptop and ``nhance-batch submit SPEC`` to a
cluster run the same job, and :meth:`JobSpec.to_run_config` builds the config through the
command line's own :func:`~nhance_batch.cli.run.build_config`, so the two paths cannot disagree.

::

    input = "/data/phone-videos/"
    output = "/data/enhanced/"
    chunk_frames = 64
    lossless = true

    [resources]
    gpus_per_worker = 1
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: Top-level keys: name -> (accepted types, description for error messages).
_INT, _STR, _BOOL, _NUM, _TABLE = (int,), (str,), (bool,), (int, float), (dict,)
_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "input": (_STR, "a string"),
    "output": (_STR, "a string"),
    "model": (_STR, "a string"),
    "model_path": (_STR, "a string"),
    "chunk_frames": (_INT, "an integer"),
    "overlap": (_INT, "an integer"),
    "temporal_radius": (_INT, "an integer"),
    "lossless": (_BOOL, "true or false"),
    "codec": (_STR, "a string"),
    "crf": (_INT, "an integer"),
    "preset": (_STR, "a string"),
    "workers": (_INT, "an integer"),
    "max_retries": (_INT, "an integer"),
    "storage_options": (_TABLE, "a table"),
    "resources": (_TABLE, "a table"),
}
_RESOURCE_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "gpus_per_worker": (_NUM, "a number"),
}
#: Inclusive lower (and upper) bounds of numeric keys.
_RANGES: dict[str, tuple[float, float | None]] = {
    "chunk_frames": (0, None), "overlap": (0, None), "temporal_radius": (0, None),
    "crf": (0, 63), "workers": (0, None), "max_retries": (0, None),
}


class SpecError(ValueError):
    """A job spec that cannot be read or is not valid (the message names the file and key)."""


def _is_url(value: str) -> bool:
    return "://" in value


@dataclass(frozen=True)
class JobSpec:
    """One batch job: the ``nhance-batch run`` options as read from a spec file.

    Unset optional values (None) take the command's defaults. ``storage_options`` is passed
    through untouched to the storage layer (credentials, endpoints of object stores).
    ``base_dir`` is the spec file's folder: relative local ``input``/``output`` paths are
    relative to it.
    """

    input: str
    output: str
    model: str = "iphone"
    model_path: str | None = None
    chunk_frames: int = 0
    overlap: int | None = None
    temporal_radius: int | None = None
    lossless: bool = False
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    workers: int = 0
    max_retries: int = 2
    gpus_per_worker: float | None = None
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)
    base_dir: str | None = field(default=None, compare=False)

    # -- paths -------------------------------------------------------------------------
    def resolve(self, value: str) -> str:
        """A spec path as the job sees it: URLs and absolute paths as written, relative local
        paths joined to the spec's folder."""
        if _is_url(value) or os.path.isabs(value) or not self.base_dir:
            return value
        return os.path.normpath(os.path.join(self.base_dir, value))

    def relative_paths(self) -> list[str]:
        """The keys whose values are relative local paths (meaningless on a remote cluster)."""
        return [key for key in ("input", "output", "model_path")
                if getattr(self, key) and not _is_url(getattr(self, key))
                and not os.path.isabs(getattr(self, key))]

    # -- to the command line's config ----------------------------------------------------
    def cli_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`nhance_batch.cli.run.build_config` for this spec."""
        return {
            "model_name": self.model,
            "model_path": Path(self.resolve(self.model_path)) if self.model_path else None,
            "chunk_frames": self.chunk_frames, "overlap": self.overlap,
            "temporal_radius": self.temporal_radius, "lossless": self.lossless,
            "codec": self.codec, "crf": self.crf, "preset": self.preset,
            "address": None, "workers": self.workers, "max_retries": self.max_retries,
            "gpus_per_worker": self.gpus_per_worker,
        }

    def to_run_config(self, **overrides: Any):
        """The :class:`~nhance_batch.config.RunConfig` of this job, built exactly as
        ``nhance-batch run`` builds it from the same options. ``overrides`` (``input``,
        ``output`` or any ``build_config`` keyword) win over the spec's values."""
        import dataclasses
        import inspect
        import json

        import click

        from nhance_batch.cli.run import build_config
        from nhance_batch.config import RunConfig

        kwargs = self.cli_kwargs()
        takes_storage = "storage_options" in inspect.signature(build_config).parameters
        if takes_storage:
            # as --storage-options JSON, so the command's parsing (and log redaction) applies
            kwargs["storage_options"] = (json.dumps(self.storage_options)
                                         if self.storage_options else None)
        input_spec = overrides.pop("input", None) or self.resolve(self.input)
        output = overrides.pop("output", None) or self.resolve(self.output)
        kwargs.update(overrides)
        try:
            config = build_config(input_spec, output, **kwargs)
        except (click.UsageError, ValueError) as exc:
            message = exc.format_message() if isinstance(exc, click.UsageError) else str(exc)
            raise SpecError(f"{self._where()}{message}") from exc
        if self.storage_options and not takes_storage and "storage_options" in {
                f.name for f in dataclasses.fields(RunConfig)}:
            config = dataclasses.replace(config, storage_options=dict(self.storage_options))
        return config

    def _where(self) -> str:
        return f"job spec in {self.base_dir}: " if self.base_dir else "job spec: "


def parse_spec(data: dict[str, Any], *, source: str = "job spec",
               base_dir: str | None = None) -> JobSpec:
    """Validate a spec's parsed TOML (unknown keys, types, ranges) into a :class:`JobSpec`."""
    def check(table: dict[str, Any], known: dict, where: str) -> None:
        for key, value in table.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpecError(f"{source}: unknown key '{where}{key}'{hint}; known keys: "
                                f"{', '.join(sorted(known))}")
            types, wanted = known[key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise SpecError(f"{source}: {where}{key} must be {wanted}, not "
                                f"{type(value).__name__} {value!r}")
            if key in _RANGES:
                low, high = _RANGES[key]
                if value < low or (high is not None and value > high):
                    bounds = f">= {low}" if high is None else f"between {low} and {high}"
                    raise SpecError(f"{source}: {where}{key} must be {bounds}, not {value!r}")

    check(data, _KEYS, "")
    resources = data.get("resources", {})
    check(resources, _RESOURCE_KEYS, "resources.")
    for key in ("input", "output"):
        if not data.get(key):
            raise SpecError(f"{source}: {key!r} is required")
    gpus = resources.get("gpus_per_worker")
    if gpus is not None and gpus <= 0:
        raise SpecError(f"{source}: resources.gpus_per_worker must be > 0, not {gpus!r}")
    values = {k: v for k, v in data.items() if k != "resources"}
    if gpus is not None:
        values["gpus_per_worker"] = float(gpus)
    known = {f.name for f in fields(JobSpec)}
    assert set(values) <= known, set(values) - known
    return JobSpec(**values, base_dir=base_dir)


def load_spec(path: str | os.PathLike[str]) -> JobSpec:
    """Read and validate a TOML job spec; :class:`SpecError` names what is wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise SpecError(f"job spec {path} not found") from exc
    except OSError as exc:
        raise SpecError(f"job spec {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"job spec {path} is not valid TOML: {exc}") from exc
    return parse_spec(data, source=str(path), base_dir=str(path.resolve().parent))
