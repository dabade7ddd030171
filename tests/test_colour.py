"""The HDR <-> SDR colour math (nhance_batch.model.colour) against colour-science, and the
rules of the way back: SDR-equivalence, highlights and wide-gamut colours kept, strength."""

from __future__ import annotations

import numpy as np
import pytest

colour_science = pytest.importorskip("colour")

from nhance_batch.model import colour  # noqa: E402
from nhance_batch.model.colour import HLG, PQ  # noqa: E402


def _np(x):
    return np.asarray(x, np.float64)


CODES = np.linspace(0.0, 1.0, 257).astype(np.float32)


def test_pq_eotf_and_inverse_match_colour_science():
    reference = colour_science.models.eotf_ST2084(CODES.astype(np.float64))
    np.testing.assert_allclose(_np(colour.pq_eotf(CODES)), reference, rtol=2e-4, atol=1e-4)
    nits = np.geomspace(1e-3, 10000, 200).astype(np.float32)
    np.testing.assert_allclose(_np(colour.pq_inverse_eotf(nits)),
                               colour_science.models.eotf_inverse_ST2084(nits),
                               atol=1e-5)  # float32: 1 % of a 10-bit step


def test_hlg_oetf_and_inverse_match_colour_science():
    np.testing.assert_allclose(_np(colour.hlg_inverse_oetf(CODES)),
                               colour_science.models.oetf_inverse_BT2100_HLG(CODES), atol=1e-6)
    scene = np.linspace(0.0, 1.0, 257).astype(np.float32)
    np.testing.assert_allclose(_np(colour.hlg_oetf(scene)),
                               colour_science.models.oetf_BT2100_HLG(scene), atol=1e-6)


def test_hlg_ootf_and_inverse_match_colour_science():
    rgb = np.random.default_rng(0).random((64, 3)).astype(np.float32)
    display = colour_science.models.ootf_BT2100_HLG(rgb, L_B=0, L_W=1000, gamma=1.2)
    np.testing.assert_allclose(_np(colour.hlg_ootf(rgb)), display, rtol=1e-5, atol=1e-4)
    back = colour_science.models.ootf_inverse_BT2100_HLG(display, L_B=0, L_W=1000, gamma=1.2)
    np.testing.assert_allclose(_np(colour.hlg_inverse_ootf(display.astype(np.float32))), back,
                               rtol=1e-4, atol=1e-6)


def test_primaries_matrices_match_colour_science_and_bt2087():
    spaces = colour_science.RGB_COLOURSPACES
    reference = colour_science.matrix_RGB_to_RGB(spaces["ITU-R BT.2020"], spaces["ITU-R BT.709"])
    np.testing.assert_allclose(colour.BT2020_TO_BT709, reference, atol=1e-9)
    bt2087 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114],
                       [0.0164, 0.0880, 0.8956]])  # BT.2087-0, equation (4), 4 decimals
    np.testing.assert_allclose(colour.BT709_TO_BT2020, bt2087, atol=6e-5)
    np.testing.assert_allclose(colour.BT2020_TO_BT709 @ colour.BT709_TO_BT2020, np.eye(3),
                               atol=1e-12)


def test_bt1886_is_gamma_2_4_with_black_zero():
    reference = colour_science.models.eotf_BT1886(CODES, L_B=0, L_W=1)
    np.testing.assert_allclose(_np(colour.bt1886(CODES)), reference, atol=1e-6)
    np.testing.assert_allclose(_np(colour.bt1886_inverse(colour.bt1886(CODES))), CODES,
                               atol=2e-6)


def _hdr_codes(light_709, transfer):
    from tests.media.hdrmedia import hdr_codes

    return hdr_codes(light_709, transfer, highlight=False)


def _ten_bit(codes):
    """Full-scale code values as a 10-bit video carries them, widened to 16 bits."""
    return (np.round(np.clip(codes, 0, 1) * 1023) / 1023).astype(np.float32)


@pytest.mark.parametrize("transfer", [PQ, HLG])
def test_sdr_equivalence_identity_model_returns_the_input(transfer):
    """Content at or below reference white and inside BT.709: forward, then back with an
    identity "model", gives the input within 10-bit rounding; the rendition is the SDR
    picture (BT.1886 code values) the content came from."""
    rng = np.random.default_rng(1)
    sdr = rng.random((1, 16, 16, 3))
    exact = _hdr_codes(sdr ** 2.4, transfer).astype(np.float32)
    s = _np(colour.rendition(exact, transfer))
    # compared in light: near black, float32's few ulps grow through the 1/2.4 power
    np.testing.assert_allclose(s ** 2.4, sdr ** 2.4, rtol=2e-4, atol=5e-5)
    np.testing.assert_allclose(s, sdr, atol=2e-3)
    codes = _ten_bit(exact)  # near black, 10-bit steps fall a little outside BT.709
    s = _np(colour.rendition(codes, transfer))
    back = _np(colour.restore(codes, s.astype(np.float32), transfer))
    assert np.abs(back - codes).max() < 0.5 / 1023


@pytest.mark.parametrize("transfer", [PQ, HLG])
def test_sdr_equivalence_any_model_output_is_the_sdr_result(transfer):
    """Inside the SDR range the residual is nothing: the output seen as SDR (forward-mapped)
    is the model's output, clipped as the SDR pipeline clips it."""
    rng = np.random.default_rng(2)
    codes = _ten_bit(_hdr_codes(rng.random((1, 16, 16, 3)) ** 2.4, transfer))
    z = (rng.random((1, 16, 16, 3)) * 1.2 - 0.1).astype(np.float32)  # a model's range
    out = colour.restore(codes, z, transfer)
    seen = _np(colour.rendition(out, transfer))
    # in light, the model's output plus what the rendition clipped of the input: only the
    # input's own 10-bit rounding, where it fell outside BT.709 (near black) or above white
    light = _np(colour.to_linear(codes, transfer)) @ colour.BT2020_TO_BT709.T
    expected = np.clip(np.clip(z, 0, 1) ** 2.4 + light - np.clip(light, 0, 1), 0, 1)
    assert np.abs(light - np.clip(light, 0, 1)).max() < 2e-3
    np.testing.assert_allclose(seen ** 2.4, expected, rtol=2e-4, atol=5e-5)  # float32


@pytest.mark.parametrize("transfer", [PQ, HLG])
def test_highlights_and_wide_gamut_colours_survive(transfer):
    """Light above reference white and a colour outside BT.709 are clipped in the rendition
    and come back on the way out; a model that darkens the SDR picture darkens them by as
    much light, not by as much ratio."""
    nits = np.array([[[[600.0, 600.0, 600.0], [150.0, 10.0, 5.0]]]])  # BT.2020 light
    cs = colour_science

    if transfer == PQ:
        codes = cs.models.eotf_inverse_ST2084(nits)
    else:
        scene = cs.models.ootf_inverse_BT2100_HLG(nits, L_W=1000, L_B=0)
        codes = cs.models.oetf_BT2100_HLG(scene)
    codes = codes.astype(np.float32)
    s = colour.rendition(codes, transfer)
    assert _np(s)[0, 0, 0].max() == pytest.approx(1.0)  # the highlight is clipped in S
    back = _np(colour.restore(codes, s, transfer))
    np.testing.assert_allclose(back, codes, atol=2e-4)
    darker = _np(colour.restore(codes, np.asarray(s) * 0.9, transfer))
    light = _np(colour.to_linear(darker, transfer)) * 203
    # 600 cd/m2 less what the model took from reference white: (1 - 0.9^2.4) x 203
    np.testing.assert_allclose(light[0, 0, 0], 600 - (1 - 0.9 ** 2.4) * 203, rtol=1e-3)


def test_strength_zero_returns_the_input_and_half_is_halfway():
    rng = np.random.default_rng(3)
    codes = _ten_bit(_hdr_codes(rng.random((1, 8, 8, 3)) ** 2.4, PQ))
    s = _np(colour.rendition(codes, PQ))
    z = np.clip(s + 0.2, 0, 1).astype(np.float32)
    none = _np(colour.restore(codes, z, PQ, strength=0.0))
    assert np.abs(none - codes).max() < 0.5 / 1023
    exact = _hdr_codes(rng.random((1, 8, 8, 3)) ** 2.4, PQ).astype(np.float32)
    s = _np(colour.rendition(exact, PQ))
    z = np.clip(s + 0.2, 0, 1).astype(np.float32)
    half = _np(colour.rendition(colour.restore(exact, z, PQ, strength=0.5), PQ))
    np.testing.assert_allclose(half ** 2.4, (s + 0.5 * (z - s)) ** 2.4, rtol=2e-4, atol=5e-5)
