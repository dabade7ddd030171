"""A synthetic "new phone": real photographs that ship with scikit-image, degraded by a fixed,
seeded camera model (tone curve, colour cast, blur, noise, JPEG); the clean image is the target."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina")


def degrade(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The phone's rendering of the clean ``rgb`` (uint8): flat, warm, soft, noisy, JPEG."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = rgb.astype(np.float32) / 255.0
    x = 0.08 + 0.8 * x ** 1.35                       # tone curve: lifted blacks, dimmer, gamma
    x = x * np.array([1.10, 0.97, 0.80], np.float32)  # colour cast (warm)
    x = gaussian_filter(x, sigma=(0.9, 0.9, 0))      # lens/processing blur
    x = x + rng.normal(0.0, 0.015, x.shape).astype(np.float32)  # sensor noise
    x = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=70)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def make_pairs(root: Path, *, side: int = 96, tiles: int = 2, images=IMAGES,
               layout: tuple[str, str] = ("phone", "target")) -> list[str]:
    """Write pairs of ``side`` x ``side`` tiles (each image scaled so that ``tiles`` x
    ``tiles`` tiles cover it) into ``root/<phone>/`` and ``root/<target>/``; their names."""
    import skimage.data
    from PIL import Image

    phone_dir, target_dir = root / layout[0], root / layout[1]
    phone_dir.mkdir(parents=True, exist_ok=True)
    target_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, image_name in enumerate(images):
        rgb = getattr(skimage.data, image_name)()[..., :3]
        small = np.asarray(Image.fromarray(rgb).resize((side * tiles, side * tiles),
                                                       Image.LANCZOS))
        for ty in range(tiles):
            for tx in range(tiles):
                tile = small[ty * side:(ty + 1) * side, tx * side:(tx + 1) * side]
                name = f"{image_name}_{ty}{tx}.png"
                Image.fromarray(tile).save(target_dir / name)
                Image.fromarray(degrade(tile, seed=1000 * k + 10 * ty + tx)).save(
                    phone_dir / name)
                names.append(name)
    return names
