"""``codec="auto"``: a hardware encoder is used only when it really encodes here; otherwise
libx264, with a note naming what was tried and why it was refused."""

from __future__ import annotations

import av
import numpy as np
import pytest

from nhance_batch.config import EncodeConfig
from nhance_batch.media import decode_all, encode_part, encoder_settings, probe
from nhance_batch.media import encode as encode_mod
from tests.media.makemedia import make_video, picture


@pytest.fixture(autouse=True)
def _fresh_choice():
    encode_mod.choose_codec.cache_clear()
    yield
    encode_mod.choose_codec.cache_clear()


def _nvenc_works() -> bool:
    return encode_mod.probe_encoder("h264_nvenc") is None


def test_probe_encoder_opens_and_encodes():
    assert encode_mod.probe_encoder("libx264") is None
    assert encode_mod.probe_encoder("mpeg4") is None
    assert encode_mod.probe_encoder("no_such_encoder") == "not in this FFmpeg build"


def test_probe_refuses_an_encoder_that_cannot_open(monkeypatch):
    """An encoder FFmpeg lists but that fails when opened (NVENC without a GPU) is refused with
    FFmpeg's reason; simulated with a pixel format libx264 cannot take."""
    real_create = av.CodecContext.create

    def create(codec, *args):
        context = real_create(codec, *args)
        context.options = {"profile": "no-such-profile"}
        return context

    monkeypatch.setattr(av.CodecContext, "create", staticmethod(create))
    reason = encode_mod.probe_encoder("libx264")
    assert reason is not None and reason.startswith("cannot open it here")


def test_first_working_candidate_is_chosen():
    choice = encode_mod.choose_codec(("no_such_encoder", "mpeg4", "libx264"))
    assert choice.codec == "mpeg4" and choice.hardware and choice.note is None
    assert choice.tried == (("no_such_encoder", "not in this FFmpeg build"),)


def test_fallback_to_libx264_with_a_note():
    choice = encode_mod.choose_codec(("no_such_encoder", "other_missing"))
    assert choice.codec == "libx264" and not choice.hardware
    assert "no_such_encoder: not in this FFmpeg build" in choice.note
    assert "other_missing" in choice.note and choice.note.endswith("using libx264")


@pytest.mark.skipif(_nvenc_works(), reason="this machine has a working NVENC")
def test_auto_on_a_machine_without_nvenc_resolves_to_libx264():
    resolved, note = encode_mod.resolve_codec(EncodeConfig(codec="auto"))
    assert resolved.codec == "libx264"
    assert "h264_nvenc" in note and "using libx264" in note
    assert resolved.crf == 18 and resolved.preset == "medium"


def test_resolve_leaves_explicit_and_lossless_alone():
    config = EncodeConfig(codec="libx265", crf=23)
    assert encode_mod.resolve_codec(config) == (config, None)
    lossless = EncodeConfig(codec="auto", lossless=True)
    assert encode_mod.resolve_codec(lossless) == (lossless, None)


def test_nvenc_settings_use_constant_quality_and_its_presets(tmp_path):
    src = make_video(tmp_path / "s.mp4", width=64, height=48, frames=2)
    info = probe(src)
    settings = encoder_settings(info, EncodeConfig(codec="h264_nvenc", crf=20, preset="slow"))
    assert settings.codec == "h264_nvenc" and settings.pix_fmt == "yuv420p"
    assert settings.options == {"rc": "vbr", "cq": "20", "b": "0", "preset": "p5"}


def test_encode_part_with_auto_writes_a_playable_part(tmp_path):
    src = make_video(tmp_path / "s.mp4", width=64, height=48, frames=6)
    info = probe(src)
    frames = np.stack([picture(i, 64, 48) for i in range(6)])
    dest = tmp_path / "part.mp4"
    encode_part(frames, np.asarray(info.pts), info, dest, EncodeConfig(codec="auto"))
    expected = encode_mod.resolve_codec(EncodeConfig(codec="auto"), info)[0].codec
    with av.open(str(dest)) as container:
        name = container.streams.video[0].codec_context.name
    assert name == {"libx264": "h264", "h264_nvenc": "h264", "hevc_nvenc": "hevc"}[expected]
    decoded = decode_all(dest, probe(dest))
    assert len(decoded.frames) == 6
