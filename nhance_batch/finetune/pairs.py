"""Training pairs: find them, check every one before training, split off validation by file.

Layout: ``DIR/phone/`` and ``DIR/target/`` hold aligned images with the same relative names and
sizes (any format PIL reads). DPED's own layout is accepted too: ``DIR/canon/`` holds the
targets and the one other folder (``iphone/``, ``sony/``...) the phone images. DIR is a local
path or any fsspec URL.

:func:`load_pairs` lists every problem it finds (no pairs, a name on one side only, different
sizes, unreadable files, images smaller than the patch) in one :class:`PairError`.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

PHONE_DIR, TARGET_DIR = "phone", "target"
DPED_TARGET_DIR = "canon"
MAX_LISTED = 50  # problems shown in full; the rest are counted


class PairError(ValueError):
    """The pair folder cannot be trained on; ``problems`` lists every reason."""

    def __init__(self, root: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED])
        more = (f"\n  ... and {len(problems) - MAX_LISTED} more"
                if len(problems) > MAX_LISTED else "")
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} with the "
                         f"training pairs in {root}:\n{shown}{more}")


@dataclass(frozen=True)
class ImagePair:
    name: str          # relative path, the same on both sides
    phone: str         # URL or path of the phone image
    target: str        # URL or path of the target image
    width: int
    height: int


@dataclass(frozen=True)
class PairSet:
    """Checked pairs, split by file: ``train`` and ``validation`` never share an image."""

    root: str
    phone_dir: str
    target_dir: str
    train: tuple[ImagePair, ...]
    validation: tuple[ImagePair, ...]
    fingerprint: str   # sha256 over names and the bytes of every image

    @property
    def all(self) -> tuple[ImagePair, ...]:
        return self.train + self.validation


def _list_files(fs: Any, path: str) -> dict[str, str]:
    """Relative name -> full path of every non-hidden file under ``path`` (recursive)."""
    base = path.rstrip("/")
    out = {}
    for full in fs.find(base):
        rel = full[len(base):].lstrip("/")
        if not rel or any(part.startswith(".") for part in rel.split("/")):
            continue
        out[rel] = full
    return out


def _layout(fs: Any, root: str) -> tuple[str, str] | list[str]:
    """(phone folder, target folder) names under ``root``, or the problems."""
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return [f"{root} does not exist"]
    except NotADirectoryError:
        return [f"{root} is not a folder"]
    folders = sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                     if e.get("type") == "directory")
    folders = [f for f in folders if not f.startswith(".")]
    if PHONE_DIR in folders and TARGET_DIR in folders:
        return PHONE_DIR, TARGET_DIR
    if DPED_TARGET_DIR in folders:
        others = [f for f in folders if f != DPED_TARGET_DIR]
        if len(others) == 1:
            return others[0], DPED_TARGET_DIR
        return [f"{root} has {DPED_TARGET_DIR}/ (DPED layout) but {len(others)} other folders "
                f"({', '.join(others) or 'none'}); it needs exactly one phone folder"]
    return [f"{root} has no {PHONE_DIR}/ and {TARGET_DIR}/ folders (nor DPED's "
            f"<phone>/ and {DPED_TARGET_DIR}/); found: {', '.join(folders) or 'no folders'}"]


def _probe(fs: Any, path: str, hasher) -> tuple[int, int]:
    """(width, height) of the image at ``path``; feeds its bytes to ``hasher``."""
    from PIL import Image

    data = fs.cat_file(path)
    hasher.update(hashlib.sha256(data).digest())
    with Image.open(io.BytesIO(data)) as image:
        size = image.size
        image.verify()
    return size


def load_pairs(root: str, *, patch: int, val_fraction: float = 0.1, seed: int = 0,
               storage_options: Mapping[str, Any] | None = None) -> PairSet:
    """Find and check every pair under ``root``; split ``val_fraction`` of them (at least one
    when there are two or more pairs) off for validation, by file, with ``seed``.

    Raises:
        PairError: with every problem found, before any training starts.
    """
    from nhance_batch import storage

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), not {val_fraction}")
    fs, base = storage.resolve(root, storage_options)
    layout = _layout(fs, base)
    if isinstance(layout, list):
        raise PairError(str(root), layout)
    phone_name, target_name = layout
    phone_dir, target_dir = f"{base.rstrip('/')}/{phone_name}", f"{base.rstrip('/')}/{target_name}"
    phones, targets = _list_files(fs, phone_dir), _list_files(fs, target_dir)
    problems: list[str] = []
    for name in sorted(set(phones) - set(targets)):
        problems.append(f"{phone_name}/{name} has no {target_name}/{name}")
    for name in sorted(set(targets) - set(phones)):
        problems.append(f"{target_name}/{name} has no {phone_name}/{name}")
    hasher = hashlib.sha256()
    pairs = []
    for name in sorted(set(phones) & set(targets)):
        hasher.update(name.encode() + b"\0")
        sizes = []
        for side, files in ((phone_name, phones), (target_name, targets)):
            try:
                sizes.append(_probe(fs, files[name], hasher))
            except Exception as exc:  # noqa: BLE001 - any decoder error means unreadable
                problems.append(f"{side}/{name} is unreadable: {exc}")
        if len(sizes) < 2:
            continue
        (pw, ph), (tw, th) = sizes
        if (pw, ph) != (tw, th):
            problems.append(f"{name}: {phone_name} is {pw}x{ph} but {target_name} is {tw}x{th}")
            continue
        if min(pw, ph) < patch:
            problems.append(f"{name} is {pw}x{ph}, smaller than the {patch}x{patch} patch")
            continue
        pairs.append(ImagePair(name, _url(root, phone_name, name), _url(root, target_name, name),
                               pw, ph))
    if not pairs and not problems:
        problems.append(f"no image pairs in {root}/{phone_name} and {root}/{target_name}")
    if problems:
        raise PairError(str(root), problems)
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = 0
    if val_fraction > 0 and len(pairs) >= 2:
        n_val = min(len(pairs) - 1, max(1, int(round(val_fraction * len(pairs)))))
    val = tuple(sorted((pairs[i] for i in order[:n_val]), key=lambda p: p.name))
    train = tuple(sorted((pairs[i] for i in order[n_val:]), key=lambda p: p.name))
    return PairSet(str(root), phone_name, target_name, train, val, hasher.hexdigest())


def _url(root: str, side: str, name: str) -> str:
    from nhance_batch import storage

    return storage.join(str(root), side, *name.split("/"))


def read_pair(pair: ImagePair, storage_options: Mapping[str, Any] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Both images of ``pair`` as uint8 RGB [H, W, 3]."""
    return _read_rgb(pair.phone, storage_options), _read_rgb(pair.target, storage_options)


def _read_rgb(url: str, storage_options: Mapping[str, Any] | None) -> np.ndarray:
    from PIL import Image

    from nhance_batch import storage

    data = storage.read_bytes(url, storage_options)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
