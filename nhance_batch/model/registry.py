"""Model registry: model names -> checkpoint files, found locally or downloaded and verified.

Resolution order for a model name:
1. an explicit path (a checkpoint prefix such as ``.../iphone_orig``, or a folder holding the files);
2. the folder named by the environment variable ``NHANCE_MODELS``;
3. the user cache folder (``NHANCE_CACHE`` or the platform's cache dir, under ``models/``);
4. a download from the registry's URL into the cache (atomic, sha256 verified).

Files found in 2 and 3 are checked against the registry's sha256 too.

A name the registry does not know is looked up among the user's models (fine-tuned with
``nhance-batch finetune``): ``$NHANCE_USER_MODELS/NAME/`` or the platform's user data folder
(``.../nhance-batch/models/NAME/``), each holding its checkpoint and a ``model.json`` with the
files' sha256 (checked). Content networks of fine-tuning (``[content.*]`` entries, e.g.
``vgg19``) resolve like models through :func:`resolve_content`.
"""

from __future__ import annotations

import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from nhance_batch.checksum import file_sha256 as sha256
from nhance_batch.storage.cache import user_cache_dir
from nhance_batch.storage.objects import atomic_local_file

ENV_MODELS = "NHANCE_MODELS"
ENV_USER_MODELS = "NHANCE_USER_MODELS"
USER_MODEL_FILE = "model.json"
DOWNLOAD_TIMEOUT_S = 60


class ModelError(RuntimeError):
    """A model could not be resolved; the message says what was looked for and how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: its checkpoint prefix name, files with sha256, and download URL."""

    name: str
    description: str
    checkpoint: str
    url_prefix: str
    files: tuple[tuple[str, str], ...]  # (file name, sha256)


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model was found: ``prefix`` is the checkpoint prefix to load."""

    name: str
    prefix: Path
    source: str  # "path", "env", "cache", "download" or "user"


def _registry_text() -> str:
    packaged = resources.files("nhance_batch") / "_models" / "registry.toml"
    if packaged.is_file():
        return packaged.read_text()
    # editable install / source checkout: the registry lives in the repository's models/
    return (Path(__file__).resolve().parents[2] / "models" / "registry.toml").read_text()


@lru_cache(maxsize=1)
def load_registry() -> tuple[str, dict[str, ModelSpec]]:
    """The default model name and every registry entry, from ``models/registry.toml``."""
    data = tomllib.loads(_registry_text())
    return data["default"], _specs(data["models"])


def _specs(table: dict) -> dict[str, ModelSpec]:
    return {
        name: ModelSpec(name=name, description=entry.get("description", ""),
                        checkpoint=entry["checkpoint"], url_prefix=entry["url_prefix"],
                        files=tuple(sorted(entry["files"].items())))
        for name, entry in table.items()
    }


@lru_cache(maxsize=1)
def load_content_registry() -> dict[str, ModelSpec]:
    """The registry's content networks (``[content.NAME]``; ``checkpoint`` is the file)."""
    return _specs(tomllib.loads(_registry_text()).get("content", {}))


def resolve_content(name: str, *, download: bool = True) -> Path:
    """The local file of content network ``name`` (``NHANCE_MODELS``, the cache, or a
    verified download, as for models)."""
    specs = load_content_registry()
    if name not in specs:
        raise ModelError(f"unknown content network {name!r}; registered: "
                         f"{', '.join(sorted(specs)) or 'none'}")
    return resolve(name, spec=specs[name], download=download).prefix


def user_models_dir() -> Path:
    """The folder of the user's own models (``$NHANCE_USER_MODELS`` if set)."""
    base = os.environ.get(ENV_USER_MODELS)
    if base:
        return Path(base)
    from platformdirs import user_data_dir

    return Path(user_data_dir("nhance-batch")) / "models"


def read_user_model(folder: Path) -> dict:
    """The ``model.json`` of the user model in ``folder``."""
    import json

    try:
        info = json.loads((folder / USER_MODEL_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"user model {folder.name!r}: cannot read {folder / USER_MODEL_FILE}: "
                         f"{exc}") from exc
    if not isinstance(info, dict) or "checkpoint" not in info or "files" not in info:
        raise ModelError(f"user model {folder.name!r}: {folder / USER_MODEL_FILE} lacks "
                         "'checkpoint' or 'files'")
    return info


def list_user_models() -> list[str]:
    folder = user_models_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / USER_MODEL_FILE).is_file())


def resolve_user(name: str) -> ResolvedModel | None:
    """The user model ``name`` (files verified against its model.json), or None."""
    folder = user_models_dir() / name
    if not (folder / USER_MODEL_FILE).is_file():
        return None
    info = read_user_model(folder)
    for file_name, expected in sorted(info["files"].items()):
        path = folder / file_name
        if not path.is_file():
            raise ModelError(f"user model {name!r}: {path} is missing")
        actual = sha256(path)
        if actual != expected:
            raise ModelError(f"user model {name!r}: {path} has sha256 {actual}, but its "
                             f"{USER_MODEL_FILE} records {expected}; the file was changed or "
                             "damaged: fine-tune it again or delete the folder.")
    return ResolvedModel(name, folder / info["checkpoint"], "user")


def default_model() -> str:
    return load_registry()[0]


def get_spec(name: str) -> ModelSpec:
    specs = load_registry()[1]
    if name not in specs:
        users = list_user_models()
        mine = f"; your models: {', '.join(users)}" if users else ""
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(specs))}"
                         f"{mine}; or give a checkpoint's own path with --model-path PATH")
    return specs[name]


def cache_dir() -> Path:
    """The folder where downloaded models are kept: ``models`` in the user cache folder
    (:func:`~nhance_batch.storage.user_cache_dir`)."""
    return user_cache_dir() / "models"


def _verify(spec: ModelSpec, folder: Path, where: str) -> None:
    for file_name, expected in spec.files:
        actual = sha256(folder / file_name)
        if actual != expected:
            raise ModelError(
                f"model {spec.name!r}: {folder / file_name} (from {where}) has sha256 {actual}, "
                f"expected {expected}. The file is corrupt or a different model: delete it, "
                f"or point {ENV_MODELS} at a folder holding the published {spec.checkpoint}.* files.")


def _missing(spec: ModelSpec, folder: Path) -> list[str]:
    return [f for f, _ in spec.files if not (folder / f).is_file()]


def _download(spec: ModelSpec, folder: Path) -> None:
    """Fetch every file of ``spec`` into ``folder``, each an atomic local write that is
    committed only once its sha256 is verified."""
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, expected in spec.files:
        target = folder / file_name
        if target.is_file() and sha256(target) == expected:
            continue
        url = spec.url_prefix + file_name
        try:
            with atomic_local_file(target) as tmp:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                        open(tmp, "wb") as out:
                    while block := response.read(1 << 20):
                        out.write(block)
                actual = sha256(tmp)
                if actual != expected:
                    raise ModelError(
                        f"model {spec.name!r}: download of {url} has sha256 {actual}, expected "
                        f"{expected}; nothing was kept. Retry, or place the published files "
                        f"in a folder and set {ENV_MODELS} to it.")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ModelError(
                f"model {spec.name!r}: not found in ${ENV_MODELS} or the cache ({folder}), and "
                f"downloading {url} failed: {reason}. On a machine without network access, "
                f"copy {', '.join(f for f, _ in spec.files)} into a folder and set "
                f"{ENV_MODELS} to it.") from exc


def _explicit(path: Path, name: str) -> ResolvedModel:
    prefix = path
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise ModelError(f"model path {path} is a folder with {len(indexes)} checkpoint "
                             "*.index files; pass the checkpoint prefix (e.g. .../iphone_orig)")
        prefix = indexes[0].with_suffix("")
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise ModelError(f"model path {path}: no checkpoint {prefix}.index found; pass the "
                         "checkpoint prefix (e.g. .../iphone_orig) or a folder holding it")
    return ResolvedModel(name, prefix, "path")


def resolve(name: str | None = None, path: str | os.PathLike | None = None, *,
            download: bool = True, spec: ModelSpec | None = None) -> ResolvedModel:
    """Find (or fetch) the checkpoint of model ``name``; see the module docstring for the order.

    Args:
        name: registry name; the registry's default when None.
        path: explicit checkpoint prefix or folder; wins over everything else, not verified.
        download: allow step 4.
        spec: use this entry instead of the registry's (tests, private mirrors).
    Raises:
        ModelError: unknown name, missing or corrupt files, or a failed download.
    """
    name = name or default_model()
    if path is not None:
        return _explicit(Path(path), name)
    if spec is None and name not in load_registry()[1]:
        user = resolve_user(name)
        if user is not None:
            return user
    spec = spec or get_spec(name)
    env = os.environ.get(ENV_MODELS)
    if env:
        folder = Path(env)
        missing = _missing(spec, folder)
        if missing:
            raise ModelError(f"model {spec.name!r}: {ENV_MODELS}={env} is set but lacks "
                             f"{', '.join(missing)}; put the files there or unset {ENV_MODELS} "
                             "to use the cache and download.")
        _verify(spec, folder, f"${ENV_MODELS}")
        return ResolvedModel(spec.name, folder / spec.checkpoint, "env")
    folder = cache_dir()
    if not _missing(spec, folder):
        _verify(spec, folder, "the cache")
        return ResolvedModel(spec.name, folder / spec.checkpoint, "cache")
    if not download:
        raise ModelError(f"model {spec.name!r} is not in ${ENV_MODELS} (unset) nor in the cache "
                         f"({folder}); set {ENV_MODELS} to a folder holding "
                         f"{', '.join(f for f, _ in spec.files)}, or allow the download.")
    _download(spec, folder)
    return ResolvedModel(spec.name, folder / spec.checkpoint, "download")
