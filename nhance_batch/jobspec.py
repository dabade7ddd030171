"""Job specs: a batch job written down as a TOML file (see ``jobs/example.toml``).

The keys are the ``nhance-batch run`` options (``chunk_frames`` for ``--chunk-frames`` and so
on), so ``nhance-batch run --spec SPEC`` on a laptop and ``nhance-batch submit SPEC`` to a
cluster run the same job: :meth:`JobSpec.to_run_config` builds the config through
:func:`nhance_batch.config.run_config`, the same function the command line uses, so the two
paths cannot disagree.

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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nhance_batch.config import ConfigError, RunConfig, run_config


class SpecError(ValueError):
    """A job spec that cannot be read or is not valid (the message names the file and key)."""


def _is_url(value: str) -> bool:
    return "://" in value


class Resources(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    gpus_per_worker: float | None = Field(None, gt=0)


class JobSpec(BaseModel):
    """One batch job: the ``nhance-batch run`` options as read from a spec file.

    Unset optional values (None) take the command's defaults. ``storage_options`` is passed
    through untouched to the storage layer (credentials, endpoints of object stores).
    ``base_dir`` is the spec file's folder: relative local ``input``/``output`` paths are
    relative to it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    model: str = "iphone"
    model_path: str | None = None
    precision: Literal["float32", "bfloat16", "float16"] | None = None
    jit: Literal["auto", "on", "off"] | None = None
    dashboard: bool = False
    chunk_frames: int = Field(0, ge=0)
    overlap: int | None = Field(None, ge=0)
    temporal_radius: int | None = Field(None, ge=0)
    lossless: bool = False
    codec: str | None = None
    crf: int | None = Field(None, ge=0, le=63)
    preset: str | None = None
    previews: bool = False
    strict: bool = False
    hdr: Literal["keep", "sdr"] | None = None
    strength: float | None = Field(None, ge=0, le=1)
    max_pixels: int | str | None = None
    max_frames: int | None = Field(None, ge=1)
    task_timeout: float | None = Field(None, ge=0)
    workers: int = Field(0, ge=0)
    max_retries: int = Field(2, ge=0)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Resources()
    base_dir: str | None = Field(None, exclude=True)

    @property
    def gpus_per_worker(self) -> float | None:
        return self.resources.gpus_per_worker

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

    # -- to the job's config -----------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`nhance_batch.config.run_config` for this spec."""
        values = self.model_dump(exclude={"input", "output", "resources", "base_dir"})
        values["model_path"] = (Path(self.resolve(self.model_path)) if self.model_path
                                else None)
        values["gpus_per_worker"] = self.gpus_per_worker
        values["storage_options"] = dict(self.storage_options)
        return values

    def to_run_config(self, **overrides: Any) -> RunConfig:
        """The :class:`~nhance_batch.config.RunConfig` of this job, built exactly as
        ``nhance-batch run`` builds it from the same options. ``overrides`` (``input``,
        ``output`` or any :func:`~nhance_batch.config.run_config` keyword) win over the
        spec's values."""
        values = self.settings()
        input_spec = overrides.pop("input", None) or self.resolve(self.input)
        output = overrides.pop("output", None) or self.resolve(self.output)
        values.update(overrides)
        try:
            return run_config(input_spec, output, **values)
        except ConfigError as exc:
            raise SpecError(f"{self._where()}{exc}") from exc

    def _where(self) -> str:
        return f"job spec in {self.base_dir}: " if self.base_dir else "job spec: "


_WANTED = {"int": "an integer", "bool": "true or false", "string": "a string",
           "float": "a number", "dict": "a table", "model": "a table", "literal": "one of"}


def _explain(error: dict[str, Any], source: str) -> str:
    """One pydantic error as a sentence naming the key."""
    loc = [str(p) for p in error.get("loc", ()) if not str(p).startswith(("function-", "lax-"))]
    # unions report each alternative's type in the location (``int``, ``str``): drop them
    loc = [p for p in loc if p not in ("int", "str", "float", "bool", "none", "literal[...]")]
    key = ".".join(loc)
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "extra_forbidden":
        known = (Resources.model_fields if loc[:1] == ["resources"] else
                 {k for k in JobSpec.model_fields if k != "base_dir"})
        close = difflib.get_close_matches(loc[-1], list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"{source}: unknown key '{key}'{hint}; known keys: "
                f"{', '.join(sorted(known))}")
    if kind == "missing":
        return f"{source}: {key!r} is required"
    ctx = error.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal", "greater_than"):
        field = JobSpec.model_fields.get(loc[-1]) or Resources.model_fields.get(loc[-1])
        bounds = {type(m).__name__: m for m in (field.metadata if field else [])}
        if "Ge" in bounds and "Le" in bounds:
            wanted = f"between {bounds['Ge'].ge} and {bounds['Le'].le}"
        elif "Gt" in bounds:
            wanted = f"> {bounds['Gt'].gt}"
        else:
            wanted = f">= {ctx.get('ge', ctx.get('le'))}" if "ge" in ctx else f"<= {ctx['le']}"
        return f"{source}: {key} must be {wanted}, not {value!r}"
    if kind == "string_too_short":
        return f"{source}: {key!r} must not be empty"
    base = kind.split("_")[0]
    wanted = _WANTED.get(base)
    if kind == "literal_error":
        return f"{source}: {key} must be {ctx.get('expected')}, not {value!r}"
    if wanted:
        return f"{source}: {key} must be {wanted}, not {type(value).__name__} {value!r}"
    return f"{source}: {key}: {error.get('msg')}"


def parse_spec(data: dict[str, Any], *, source: str = "job spec",
               base_dir: str | None = None) -> JobSpec:
    """Validate a spec's parsed TOML (unknown keys, types, ranges) into a :class:`JobSpec`."""
    if "base_dir" in data:
        raise SpecError(f"{source}: unknown key 'base_dir'")
    try:
        return JobSpec(**data, base_dir=base_dir)
    except ValidationError as exc:
        raise SpecError("; ".join(dict.fromkeys(_explain(e, source)
                                                for e in exc.errors()))) from None


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
