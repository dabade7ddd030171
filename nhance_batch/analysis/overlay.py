"""What is drawn over comparison frames: the divider and the small "before"/"after" labels.

Labels are rendered once per size with Pillow's own font (scalable where Pillow has FreeType,
its bitmap font elsewhere) into a coverage mask, then blended into each frame: a dark
translucent box with light text, readable on any picture.
"""

from __future__ import annotations

import functools

import numpy as np

#: Width of the divider in pixels.
DIVIDER_WIDTH = 2
_DIVIDER_RGB = np.array([255, 255, 255], dtype=np.uint8)
_BOX_ALPHA = 0.55


def divider_left(position: float, width: int) -> int:
    """The first column of the divider for a split at ``position`` (0..1) of ``width``."""
    return int(min(max(round(position * width) - DIVIDER_WIDTH // 2, 0), width - DIVIDER_WIDTH))


def draw_divider(frame: np.ndarray, position: float) -> None:
    """Draw the divider into ``frame`` (in place) at ``position`` of its width."""
    left = divider_left(position, frame.shape[1])
    frame[:, left:left + DIVIDER_WIDTH] = _DIVIDER_RGB


def label_height(frame_height: int) -> int:
    """The text height used for labels on frames ``frame_height`` tall."""
    return max(10, round(frame_height / 20))


@functools.lru_cache(maxsize=16)
def label_mask(text: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(box, glyphs)``: float coverage masks ``[h, w]`` in 0..1 of a label ``size`` px tall."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, size // 4)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, fill=255, font=font)
    glyphs = np.asarray(image, dtype=np.float32) / 255.0
    return np.ones_like(glyphs), glyphs


def draw_label(frame: np.ndarray, text: str, *, x: int, y: int, align: str = "left") -> None:
    """Blend a label into ``frame`` (in place) with its top-left corner at ``(x, y)``
    (``align="right"``: its top-right corner). Clipped to the frame."""
    box, glyphs = label_mask(text, label_height(frame.shape[0]))
    h, w = glyphs.shape
    if align == "right":
        x -= w
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    sub_box = box[y0 - y:y1 - y, x0 - x:x1 - x, None] * _BOX_ALPHA
    sub_text = glyphs[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    region = region * (1.0 - sub_box)  # darken under the box
    region = region * (1.0 - sub_text) + 240.0 * sub_text
    frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


def label_margin(frame_height: int) -> int:
    """Distance of labels from the frame's edges."""
    return max(2, frame_height // 60)
