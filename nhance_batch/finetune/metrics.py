"""Validation metrics: PSNR and SSIM of whole images, enhanced as ``run`` would (uint8)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nhance_batch.finetune.pairs import ImagePair, read_pair


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255); inf when identical."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03, L 255) over
    pixels and channels of two uint8 RGB images."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)

        def blur(t):
            return gaussian_filter(t, 1.5, truncate=3.5)

        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        values.append(s.mean())
    return float(np.mean(values))


class Evaluator:
    """Enhances validation images with given generator arrays; compiled once per image shape
    with the weights as arguments, so evaluating new weights costs no recompilation."""

    def __init__(self, pairs: Sequence[ImagePair],
                 storage_options: Mapping[str, Any] | None = None, *, jit: bool = True) -> None:
        self.pairs = list(pairs)
        self.storage_options = storage_options
        self.jit = jit
        self._fn: Callable | None = None

    def images(self):
        """The validation pairs, read one at a time (never all held in memory)."""
        for pair in self.pairs:
            yield read_pair(pair, self.storage_options)

    def _enhance_fn(self) -> Callable:
        if self._fn is None:
            from keras import ops

            from nhance_batch.finetune.backend import compile_step
            from nhance_batch.model.dped import DPEDWeights, forward

            def run(params, x):
                y = forward(ops.cast(x, "float32") / 255.0, DPEDWeights.from_arrays(params))
                return ops.cast(ops.round(ops.clip(y, 0.0, 1.0) * 255.0), "uint8")

            self._fn = compile_step(run, jit=self.jit)
        return self._fn

    def enhance(self, params, rgb: np.ndarray) -> np.ndarray:
        return np.asarray(self._enhance_fn()(list(params), rgb[None]))[0]

    def identity(self) -> dict[str, float]:
        """The metrics of doing nothing (the phone images against their targets)."""
        return self._score((phone, target) for phone, target in self.images())

    def evaluate(self, params) -> dict[str, float]:
        """Mean PSNR and SSIM over the validation pairs of the generator ``params``."""
        return self._score((self.enhance(params, phone), target)
                           for phone, target in self.images())

    @staticmethod
    def _score(outputs) -> dict[str, float]:
        scores = [(psnr(o, t), ssim(o, t)) for o, t in outputs]
        if not scores:
            return {"psnr": float("nan"), "ssim": float("nan")}
        return {"psnr": float(np.mean([p for p, _ in scores])),
                "ssim": float(np.mean([s for _, s in scores]))}
