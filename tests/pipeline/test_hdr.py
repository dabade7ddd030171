"""HDR sources (HEVC 10-bit PQ and HLG with HDR10 metadata) and ``strength`` through the
real pipeline (sequential executor, the real model), and the enhance step's rules with the
real model: SDR-equivalence, highlights kept, strength 0 and 0.5."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("colour")

from nhance_batch.config import (ChunkConfig, ClusterConfig, EncodeConfig,  # noqa: E402
                                 ModelConfig, RunConfig)
from nhance_batch.pipeline.driver import Driver  # noqa: E402
from nhance_batch.pipeline.executor import SequentialExecutor  # noqa: E402
from tests.media.hdrmedia import HLG, PATCH, PQ, hdr_codes, make_hdr_video, sdr_light  # noqa: E402
from tests.pipeline.conftest import frames_and_times  # noqa: E402

MODEL = ModelConfig(batch_size=2, jit="off")  # a fixed path: nothing to measure


def run_job(src, out, encode: EncodeConfig, model: ModelConfig = MODEL,
            summaries: list | None = None):
    config = RunConfig(input=str(src), output=str(out), model=model,
                       chunk=ChunkConfig(chunk_frames=4, overlap=1), encode=encode,
                       cluster=ClusterConfig(workers=1), temporal_radius=1)
    executor = SequentialExecutor(config.model)
    try:
        summary = Driver.for_config(config).run(executor)
    finally:
        executor.shutdown()
    assert summary.failed == 0, summary
    if summaries is not None:
        summaries.append(summary)
    return out / src.name


@pytest.fixture(scope="module")
def hdr_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hdr_clips")
    return {t: make_hdr_video(folder / f"{name}.mp4", transfer=t, frames=6)
            for t, name in ((PQ, "pq"), (HLG, "hlg"))}


@pytest.mark.parametrize("transfer", [PQ, HLG])
def test_hdr_clip_keeps_its_tags_bit_depth_and_hdr10_metadata(hdr_clips, tmp_path, transfer):
    from nhance_batch.media import probe

    src = hdr_clips[transfer]
    out = run_job(src, tmp_path / "out", EncodeConfig(codec="libx265", preset="ultrafast"))
    before, after = probe(src), probe(out)
    assert after.color == before.color
    assert (after.codec, after.bit_depth, after.frame_count) == ("hevc", 10, 6)
    assert after.hdr_metadata == before.hdr_metadata is not None


def test_dolby_vision_is_noted_and_its_base_layer_kept(hdr_clips, tmp_path):
    """A ``dvh1`` HLG clip (profile 8.4's shape): the output is plain HLG, and the video's
    note says the RPU was not kept."""
    from nhance_batch.media import probe
    from tests.media.hdrmedia import retag

    src = retag(hdr_clips[HLG], tmp_path / "dv.mp4", "dvh1")
    assert probe(src).hdr_metadata.dolby_vision
    summaries = []
    out = run_job(src, tmp_path / "out", EncodeConfig(codec="libx265", preset="ultrafast"),
                  summaries=summaries)
    note = summaries[0].videos[0].note
    assert "Dolby Vision" in note and "HLG" in note
    after = probe(out)
    assert after.color.transfer == HLG and not after.hdr_metadata.dolby_vision


def test_hdr_and_strength_settings_reach_the_config():
    from nhance_batch.config import run_config
    from nhance_batch.jobspec import JobSpec
    from nhance_batch.web.settings import JobSettings, ServerConfig

    config = run_config("in", "out", hdr="sdr", strength=0.25)
    assert (config.encode.hdr, config.model.strength) == ("sdr", 0.25)
    assert (run_config("in", "out").encode.hdr, run_config("in", "out").model.strength) == \
        ("keep", 1.0)
    spec = JobSpec(input="in", output="out", hdr="sdr", strength=0.5).to_run_config()
    assert (spec.encode.hdr, spec.model.strength) == ("sdr", 0.5)
    form = JobSettings.from_form({"hdr": "sdr", "strength": "0.75"})
    server = ServerConfig(data="/tmp", token="t")
    web = form.run_config("in", "out", server)
    assert (web.encode.hdr, web.model.strength) == ("sdr", 0.75)
    for bad in ({"strength": 1.5}, {"strength": -0.1}, {"hdr": "hdr10"}):
        with pytest.raises(ValueError):
            run_config("in", "out", **bad)


def _rendition(codes_u16: np.ndarray, transfer: int) -> np.ndarray:
    from nhance_batch.model import colour

    return np.asarray(colour.rendition(codes_u16.astype(np.float32) / 65535, transfer))


def _excess(codes_u16: np.ndarray, transfer: int) -> np.ndarray:
    """What the rendition clips of each pixel: BT.709 light (1 = reference white) outside
    [0, 1]."""
    from nhance_batch.model import colour

    light = np.asarray(colour.to_linear(codes_u16.astype(np.float32) / 65535, transfer))
    light = light.astype(np.float64) @ colour.BT2020_TO_BT709.T
    return light - np.clip(light, 0, 1)


def test_hdr_sdr_is_the_bt709_8bit_rendition_of_the_hdr_output(hdr_clips, tmp_path):
    """``hdr="sdr"`` writes BT.709 8-bit, and its picture is the HDR output's rendition (the
    same frames, seen through the forward mapping), both written losslessly."""
    from nhance_batch.media import probe

    src = hdr_clips[PQ]
    keep = run_job(src, tmp_path / "keep", EncodeConfig(lossless=True))
    sdr = run_job(src, tmp_path / "sdr", EncodeConfig(lossless=True, hdr="sdr"))
    info = probe(sdr)
    assert (info.color.primaries, info.color.transfer, info.bit_depth) == (1, 1, 8)
    kept = probe(keep)  # lossless keeps HDR: 16-bit RGB in the source's transfer/primaries
    assert (kept.color.primaries, kept.color.transfer, kept.bit_depth) == (9, PQ, 16)
    hdr_frames, _ = frames_and_times(keep)
    sdr_frames, _ = frames_and_times(sdr)
    seen = _rendition(hdr_frames, PQ)
    # the SDR picture plus what the input's rendition clipped (in BT.709 light: the
    # highlight, colours outside BT.709) is the HDR output seen as SDR
    excess = _excess(frames_and_times(src)[0], PQ)
    assert excess[:, PATCH[0], PATCH[1]].min() > 1.0  # 800 cd/m2: ~3.9 x reference white
    sdr = sdr_frames / 255.0
    expected = np.clip(sdr ** 2.4 + excess, 0, 1)  # in light
    rounding = 2.4 * sdr ** 1.4 * (1.25 / 255)  # a little over the 8-bit step, in light
    assert (np.abs(seen ** 2.4 - expected) <= rounding + 2e-4).all()
    inside = (np.abs(excess) < 1e-6).all(axis=-1)
    assert inside.mean() > 0.8
    # and where nothing was clipped, the SDR picture itself (away from black, whose code
    # values the 1/2.4 power makes steep)
    assert np.abs(seen - sdr)[inside[..., None] & (sdr > 0.05)].max() < 2.5 / 255


def test_hdr_sdr_lossy_is_8bit_bt709(hdr_clips, tmp_path):
    from nhance_batch.media import probe

    out = run_job(hdr_clips[HLG], tmp_path / "out", EncodeConfig(hdr="sdr"))
    info = probe(out)
    # codec match: an HEVC source stays HEVC, here 8-bit since the rendition is
    assert (info.codec, info.bit_depth, info.pix_fmt) == ("hevc", 8, "yuv420p")
    assert info.color == type(info.color)(primaries=1, transfer=1, matrix=1, range=1)
    assert info.hdr_metadata is None


def test_strength_zero_gives_back_the_decoded_input(tmp_path):
    from tests.media.makemedia import make_video

    src = make_video(tmp_path / "sdr.mp4", width=32, height=24, frames=5, gop=4)
    out = run_job(src, tmp_path / "out", EncodeConfig(lossless=True),
                  MODEL.model_copy(update={"strength": 0.0}))
    assert np.array_equal(frames_and_times(out)[0], frames_and_times(src)[0])


# -- the enhance step with the real model ----------------------------------------------------

@pytest.fixture(scope="module")
def enhancer():
    from nhance_batch.model.enhancer import Enhancer

    return Enhancer(MODEL)


def _hdr_frames(transfer, highlight=False, n=3, width=32, height=24):
    codes = np.stack([hdr_codes(sdr_light(i, width, height), transfer, highlight)
                      for i in range(n)])
    return np.round(np.round(codes * 1023) / 1023 * 65535).astype(np.uint16)  # 10-bit values


@pytest.mark.parametrize("transfer", [PQ, HLG])
def test_hdr_output_seen_as_sdr_equals_the_sdr_pipeline_on_the_rendition(enhancer, transfer):
    from nhance_batch.pipeline.grade import enhance_chunk

    frames = _hdr_frames(transfer)
    out = enhance_chunk(enhancer, frames, slice(0, 3), 1, transfer=transfer).frames
    rendition = np.round(_rendition(frames, transfer) * 65535).astype(np.uint16)
    sdr = enhance_chunk(enhancer, rendition, slice(0, 3), 1).frames / 65535.0
    seen = _rendition(out, transfer)
    assert np.abs(seen - sdr).max() < 2.0 / 255  # far from black: < 1e-3
    assert np.abs(seen - sdr)[sdr > 0.1].max() < 1e-3


@pytest.mark.parametrize("transfer", [PQ, HLG])
def test_highlight_survives_the_round_trip(enhancer, transfer):
    from nhance_batch.model import colour
    from nhance_batch.pipeline.grade import enhance_chunk

    frames = _hdr_frames(transfer, highlight=True)
    out = enhance_chunk(enhancer, frames, slice(0, 3), 1, transfer=transfer).frames
    light = np.asarray(colour.to_linear(out.astype(np.float32) / 65535, transfer)) * 203
    patch = light[(slice(None), *PATCH)]
    assert patch.min() > 400  # 800 cd/m2 in; far above reference white (203) out
    assert np.abs(_rendition(out, transfer)[(slice(None), *PATCH)] - 1.0).max() < 0.05


def test_strength_blends_in_the_models_domain(enhancer):
    from nhance_batch.pipeline.grade import enhance_chunk
    from tests.media.makemedia import picture

    frames = np.stack([picture(i, 32, 24) for i in range(3)])
    full = enhance_chunk(enhancer, frames, slice(0, 3), 1).frames.astype(np.int32)
    none = enhance_chunk(enhancer, frames, slice(0, 3), 1, strength=0.0).frames
    half = enhance_chunk(enhancer, frames, slice(0, 3), 1, strength=0.5).frames
    assert np.array_equal(none, frames)
    assert np.abs(half - (frames + full) / 2).max() <= 1.0
    assert np.abs(full - frames).max() > 20  # the model does change the picture


def test_hdr_strength_zero_gives_back_the_hdr_input(enhancer):
    from nhance_batch.pipeline.grade import enhance_chunk

    frames = _hdr_frames(PQ, highlight=True)
    out = enhance_chunk(enhancer, frames, slice(0, 3), 1, transfer=PQ, strength=0.0).frames
    assert np.abs(out.astype(np.int64) - frames).max() < 65535 / 1023 / 2
