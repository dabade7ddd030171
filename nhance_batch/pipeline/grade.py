"""The enhance step of one chunk: the model's passes, temporal stabilisation, the strength
blend, and for HDR sources the way into and out of the model's SDR domain.

Everything happens in the model's domain, where the frames look like the SDR photos it was
trained on: the stabiliser measures gains against what the model was given (an 8-bit or
deeper SDR frame itself, or an HDR frame's SDR rendition :func:`colour.rendition`), and
``strength`` blends the stabilised output ``y`` with that input ``S`` as ``S + s * (y - S)``.
Then:

* SDR sources: the blend is quantised to the source's bit depth (strength 1 is exactly the
  stabilised output, strength 0 exactly the decoded frames);
* HDR sources kept HDR (``hdr="keep"``): the enhancer's compiled way back
  (:meth:`Enhancer.restore`) takes the blend to the source's transfer and primaries as
  uint16 code values, with what the rendition clipped added back;
* HDR sources made SDR (``hdr="sdr"``): the blend quantised to 8 bits, a BT.709 picture.
"""

from __future__ import annotations

import numpy as np

from nhance_batch.model.colour import HDR_TRANSFERS
from nhance_batch.temporal import ChunkStabiliser, TemporalResult, quantize


def hdr_transfer(transfer: int | None) -> int | None:
    """``transfer`` when it is an HDR transfer the colour mapping handles (PQ, HLG)."""
    return transfer if transfer in HDR_TRANSFERS else None


def output_dtype(frames: np.ndarray, transfer: int | None, hdr: str) -> type:
    """The dtype of a chunk's output frames: the source's, or uint8 for HDR made SDR."""
    if hdr_transfer(transfer) is not None and hdr == "sdr":
        return np.uint8
    return frames.dtype.type


def enhance_chunk(enhancer, frames: np.ndarray, own: slice, radius: int, *,
                  transfer: int | None = None, hdr: str = "keep",
                  strength: float = 1.0) -> TemporalResult:
    """Enhance and stabilise a chunk; its own frames come back ready to encode.

    Args:
        enhancer: a :class:`~nhance_batch.model.enhancer.Enhancer`.
        frames: the decoded chunk, context included (uint8, or uint16 code values).
        own: which frames are the chunk's own.
        radius: the temporal smoothing radius.
        transfer: the source's transfer (FFmpeg enum); PQ and HLG go through the SDR domain.
        hdr: ``keep`` or ``sdr`` (what an HDR source becomes).
        strength: 0 to 1, the share of the enhancement kept.
    """
    transfer = hdr_transfer(transfer)
    dtype = output_dtype(frames, transfer, hdr)
    own = slice(*own.indices(len(frames))[:2])
    stabiliser = ChunkStabiliser(frames, own, radius, dtype=dtype)
    if transfer is None:
        for first, y in enhancer.batches(frames, as_float=True):
            stabiliser.add(first, y)
        if strength == 1.0:
            return stabiliser.result()
        return stabiliser.result(lambda t, y: blend(frames[t:t + 1], y, strength))
    keep = hdr == "keep"
    renditions = None if keep else np.empty((own.stop - own.start, *frames.shape[1:]),
                                            np.float32)
    for first, (rendition, y) in enhancer.hdr_batches(frames, transfer):
        stabiliser.add(first, y, inputs=rendition)
        lo, hi = max(first, own.start), min(first + len(y), own.stop)
        if renditions is not None and lo < hi:  # the ``sdr`` output blends with them
            renditions[lo - own.start:hi - own.start] = rendition[lo - first:hi - first]
    if not keep:
        return stabiliser.result(lambda t, y: _blend_quantised(
            renditions[t - own.start:t - own.start + 1], y, strength, dtype))
    return stabiliser.result(
        lambda t, y: enhancer.restore(frames[t:t + 1], y, transfer, strength))


def blend(frames: np.ndarray, outputs: np.ndarray, strength: float) -> np.ndarray:
    """SDR ``frames`` (uint8 or uint16) blended with the model's float ``outputs`` for them:
    ``quantize(S + strength * (y - S))`` with ``S`` the frames in [0, 1], of the frames'
    dtype (strength 0 gives the frames back exactly)."""
    inputs = frames / np.float32(np.iinfo(frames.dtype).max)
    return _blend_quantised(inputs, outputs, strength, frames.dtype.type)


def _blend_quantised(inputs: np.ndarray, outputs: np.ndarray, strength: float,
                     dtype: type) -> np.ndarray:
    """``quantize(S + strength * (y - S))`` in float32."""
    inputs = np.asarray(inputs, np.float32)
    blended = inputs + np.float32(strength) * (np.asarray(outputs, np.float32) - inputs)
    return quantize(blended, dtype)
