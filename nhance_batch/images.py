"""Still images in and out: read any image PIL (or, failing that, PyAV) can decode; write PNG/JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


class ImageError(ValueError):
    """An image could not be read or written; the message names the file and the reason."""


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as uint8 RGB [H, W, 3]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except (UnidentifiedImageError, OSError) as pil_error:
        try:
            import av

            with av.open(str(path)) as container:
                frame = next(container.decode(video=0))
                return frame.to_ndarray(format="rgb24")
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
            raise ImageError(f"{path}: not an image PIL or PyAV can read ({pil_error})") from exc


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write uint8 RGB [H, W, 3] to ``path`` as PNG or JPEG, chosen by the extension."""
    from PIL import Image

    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: cannot write {path.suffix or 'files without an extension'}; "
                         f"use one of {', '.join(WRITE_FORMATS)}")
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(path, fmt, **options)


def side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``before`` and ``after`` next to each other (before on the left)."""
    return np.concatenate([before, after], axis=1)
