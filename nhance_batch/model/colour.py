"""HDR <-> the model's SDR domain, as Keras ops (they run inside the enhancer's compiled
functions, on the GPU where there is one).

The model was trained on SDR photos. An HDR frame (PQ or HLG, BT.2020) is shown to it as the
SDR picture it would look like (its *rendition* ``S``):

1. display light from the input's EOTF: PQ (SMPTE ST 2084) as specified; HLG (ARIB STD-B67)
   through its inverse OETF and the BT.2100 OOTF of a 1000 cd/m2 display (system gamma 1.2,
   black 0);
2. divided by 203 cd/m2, the HDR reference white of ITU-R BT.2408 (1.0 = reference white);
3. BT.2020 to BT.709 primaries in linear light (BT.2087);
4. clipped to [0, 1];
5. encoded with the inverse of BT.1886 (gamma 2.4, black 0).

The way back is the exact inverse of each step into the input's own transfer and primaries,
and what step 4 clipped is carried as a residual in linear light:
``out = inverse(z) + (input - inverse(S))``, where ``z`` is the model's (stabilised, blended)
output for ``S``. Where the input is at or below reference white and inside BT.709,
``inverse(S)`` is the input, so the output is ``inverse(z)``: exactly the SDR result. Light
above reference white, and colours outside BT.709, keep their excess.

Code values are full scale in [0, 1] (the decoder's rgb48 divided by 65535); linear values
are relative to reference white, in BT.2020 primaries.
"""

from __future__ import annotations

import numpy as np

#: FFmpeg's AVColorTransferCharacteristic values of the HDR transfers.
PQ = 16
HLG = 18
HDR_TRANSFERS = (PQ, HLG)

REFERENCE_WHITE = 203.0  # cd/m2, BT.2408
PQ_PEAK = 10000.0  # cd/m2
HLG_PEAK = 1000.0  # cd/m2, the nominal display of the OOTF
HLG_GAMMA = 1.2
BT1886_GAMMA = 2.4

# SMPTE ST 2084 constants
_M1 = 2610 / 16384
_M2 = 2523 / 4096 * 128
_C1 = 3424 / 4096
_C2 = 2413 / 4096 * 32
_C3 = 2392 / 4096 * 32
# ARIB STD-B67 constants
_A = 0.17883277
_B = 1 - 4 * _A
_C = 0.5 - _A * np.log(4 * _A)
# BT.2020 luminance weights (the OOTF's Y)
_LUMA_2020 = (0.2627, 0.6780, 0.0593)

_BT709_XY = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
_BT2020_XY = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
_D65_XY = (0.3127, 0.3290)


def rgb_to_xyz(primaries, white=_D65_XY) -> np.ndarray:
    """The RGB -> XYZ matrix of a colour space from its primaries' and white's xy (SMPTE RP
    177), float64."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    wx, wy = white
    scale = np.linalg.solve(xyz, np.array([wx / wy, 1.0, (1 - wx - wy) / wy]))
    return xyz * scale


#: Linear-light BT.2020 -> BT.709 (BT.2087), and its exact inverse.
BT2020_TO_BT709 = np.linalg.solve(rgb_to_xyz(_BT709_XY), rgb_to_xyz(_BT2020_XY))
BT709_TO_BT2020 = np.linalg.inv(BT2020_TO_BT709)


def _pow(x, p):
    from keras import ops

    return ops.power(ops.maximum(x, 0.0), p)


def pq_eotf(code):
    """PQ code value in [0, 1] -> display light in cd/m2 (0..10000)."""
    from keras import ops

    e = _pow(code, 1 / _M2)
    return PQ_PEAK * _pow(ops.maximum(e - _C1, 0.0) / (_C2 - _C3 * e), 1 / _M1)


def pq_inverse_eotf(light):
    """Display light in cd/m2 -> PQ code value in [0, 1]."""
    y = _pow(light / PQ_PEAK, _M1)
    return _pow((_C1 + _C2 * y) / (1 + _C3 * y), _M2)


def hlg_inverse_oetf(code):
    """HLG code value in [0, 1] -> normalised scene light in [0, 1]."""
    from keras import ops

    code = ops.maximum(code, 0.0)
    log_part = (ops.exp((ops.maximum(code, 0.5) - _C) / _A) + _B) / 12
    return ops.where(code <= 0.5, code * code / 3, log_part)


def hlg_oetf(scene):
    """Normalised scene light in [0, 1] -> HLG code value."""
    from keras import ops

    scene = ops.maximum(scene, 0.0)
    log_part = _A * ops.log(ops.maximum(12 * scene - _B, 1e-12)) + _C
    return ops.where(scene <= 1 / 12, ops.sqrt(3 * scene), log_part)


def _luminance(rgb):
    from keras import ops

    r, g, b = _LUMA_2020
    return ops.sum(rgb * np.array([r, g, b], np.float32), axis=-1, keepdims=True)


def hlg_ootf(scene, peak: float = HLG_PEAK, gamma: float = HLG_GAMMA):
    """BT.2100 HLG OOTF, black 0: scene light -> display light in cd/m2,
    ``peak * Ys ** (gamma - 1) * E``."""
    return peak * _pow(_luminance(scene), gamma - 1) * scene


def hlg_inverse_ootf(display, peak: float = HLG_PEAK, gamma: float = HLG_GAMMA):
    """The inverse of :func:`hlg_ootf`: display light in cd/m2 -> scene light
    (``Yd = peak * Ys ** gamma``, so ``E = Fd / peak * (Yd / peak) ** (1 / gamma - 1)``)."""
    from keras import ops

    yd = ops.maximum(_luminance(display) / peak, 1e-12)
    return display / peak * ops.power(yd, 1 / gamma - 1)


def convert_primaries(rgb, matrix: np.ndarray):
    """``matrix @ rgb`` for every pixel of ``rgb [..., 3]`` (linear light)."""
    from keras import ops

    return ops.matmul(rgb, np.asarray(matrix, np.float32).T)


def bt1886(code):
    """BT.1886 EOTF, black 0: SDR code value -> relative display light, ``V ** 2.4``."""
    return _pow(code, BT1886_GAMMA)


def bt1886_inverse(light):
    """The inverse of :func:`bt1886`: relative light -> SDR code value."""
    return _pow(light, 1 / BT1886_GAMMA)


def to_linear(code, transfer: int):
    """Steps 1-2: HDR code values -> display light relative to reference white (BT.2020)."""
    if transfer == PQ:
        return pq_eotf(code) / REFERENCE_WHITE
    if transfer == HLG:
        return hlg_ootf(hlg_inverse_oetf(code)) / REFERENCE_WHITE
    raise ValueError(f"transfer {transfer} is not PQ ({PQ}) or HLG ({HLG})")


def from_linear(light, transfer: int):
    """The inverse of :func:`to_linear`, clipped to what the transfer can carry (10000 cd/m2
    for PQ, the 1000 cd/m2 display's peak for HLG)."""
    from keras import ops

    nits = light * REFERENCE_WHITE
    if transfer == PQ:
        return pq_inverse_eotf(ops.clip(nits, 0.0, PQ_PEAK))
    if transfer == HLG:
        return hlg_oetf(ops.clip(hlg_inverse_ootf(ops.maximum(nits, 0.0)), 0.0, 1.0))
    raise ValueError(f"transfer {transfer} is not PQ ({PQ}) or HLG ({HLG})")


def clipped_bt709(light):
    """Steps 3-4: linear BT.2020 -> linear BT.709, clipped to [0, 1]."""
    from keras import ops

    return ops.clip(convert_primaries(light, BT2020_TO_BT709), 0.0, 1.0)


def rendition(code, transfer: int):
    """Steps 1-5: HDR code values ``[..., 3]`` in [0, 1] -> the SDR rendition ``S``."""
    return bt1886_inverse(clipped_bt709(to_linear(code, transfer)))


def restore(code, z, transfer: int, strength: float = 1.0):
    """The way back: the model's output ``z`` for ``code``'s rendition -> HDR code values.

    ``z`` is first blended with the rendition by ``strength`` (``S + strength * (z - S)``)
    and clipped to [0, 1], as the SDR pipeline clips; then taken back through steps 5..1 with
    the residual of what step 4 clipped added in linear light.
    """
    from keras import ops

    light = to_linear(code, transfer)
    clipped = clipped_bt709(light)
    if strength != 1.0:
        s = bt1886_inverse(clipped)
        z = s + strength * (z - s)
    z = ops.clip(z, 0.0, 1.0)
    residual = light - convert_primaries(clipped, BT709_TO_BT2020)
    out = convert_primaries(bt1886(z), BT709_TO_BT2020) + residual
    return from_linear(out, transfer)
