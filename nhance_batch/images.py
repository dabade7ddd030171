"""Still images in and out: read any image PIL (or, failing that, PyAV) can decode; write PNG/JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


class ImageError(ValueError):
    """An image could not be read or written; the message names the file and the reason."""


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """The image at ``path`` as uint8 RGB [H, W, 3].

    PIL reads still-image formats; anything else is opened with the media layer's safe open
    (:func:`nhance_batch.media.safe_open.open_input`: real media containers only, never a
    playlist, script or a file that makes FFmpeg open others) and its first frame is used.
    Images of more than ``max_pixels`` pixels (default: the job's limit, 8192x8192) are
    refused before they are decoded.
    """
    from PIL import Image, UnidentifiedImageError

    from nhance_batch.config import DEFAULT_MAX_PIXELS

    limit = max_pixels or DEFAULT_MAX_PIXELS
    path = Path(path)

    def check(width: int, height: int) -> None:
        if width * height > limit:
            raise ImageError(f"{path}: {width}x{height} is more than the limit of {limit:,} "
                             "pixels")

    try:
        with Image.open(path) as image:
            check(*image.size)
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: {exc}") from exc
    except (UnidentifiedImageError, OSError) as pil_error:
        from nhance_batch.media import MediaError
        from nhance_batch.media.safe_open import open_input

        try:
            with open_input(path) as container:
                stream = container.streams.video[0]
                check(stream.codec_context.width, stream.codec_context.height)
                frame = next(container.decode(stream))
                return frame.to_ndarray(format="rgb24")
        except ImageError:
            raise
        except MediaError as exc:
            raise ImageError(f"{path}: not an image ({exc.reason})") from exc
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
