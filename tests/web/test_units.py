"""The web layer's pure parts: upload names, allowed inputs, token checks, job outcomes, and
serve's refusal to expose a generated token beyond loopback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from nhance_batch.web.inputs import input_allowed, uploads_input
from nhance_batch.web.auth import token_matches
from nhance_batch.web.runner import summarize_outcome
from nhance_batch.web.settings import JobSettings, is_loopback
from nhance_batch.web.uploads import safe_name, unique_path


@pytest.mark.parametrize("given, expected", [
    ("../../x.mp4", "x.mp4"), ("..\\..\\y.mp4", "y.mp4"), ("/etc/passwd", "passwd"),
    ("..", "upload"), ("", "upload"), (".hidden.mp4", "hidden.mp4"), ("a\x00b.mp4", "ab.mp4"),
    ("C:\\Users\\me\\clip.mov", "clip.mov"), ("ok name.mp4", "ok name.mp4"),
])
def test_safe_name(given, expected):
    assert safe_name(given) == expected


def test_long_names_keep_their_extension_and_taken_names_get_a_suffix(tmp_path):
    name = safe_name("a" * 500 + ".mp4")
    assert len(name) <= 180 and name.endswith(".mp4")
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert unique_path(tmp_path, "clip.mp4").name == "clip-1.mp4"


def test_input_allowed(tmp_path):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (root / "escape").symlink_to(tmp_path / "other", target_is_directory=True)
    prefixes = (str(root), "s3://bucket/in")
    assert input_allowed(str(root), prefixes)
    assert input_allowed(str(root / "sub"), prefixes)
    assert input_allowed(f"{root}/sub/*.mp4", prefixes)
    assert not input_allowed(f"{root}/../other", prefixes)
    assert not input_allowed(str(root / "escape"), prefixes)
    assert not input_allowed(f"{root}2", prefixes)
    assert input_allowed("s3://bucket/in/a.mp4", prefixes)
    assert not input_allowed("s3://bucket/in/../secret", prefixes)
    assert not input_allowed("s3://bucket/inside", prefixes)
    assert not input_allowed("gs://bucket/in", prefixes)
    assert not input_allowed(str(root), ())


def test_uploads_input_is_a_glob_of_the_folder(tmp_path):
    assert uploads_input(tmp_path / "input") == f"{tmp_path / 'input'}/*"


def test_token_matches():
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc") and not token_matches("", "abc")
    assert not token_matches(None, "abc") and not token_matches("abcd", "abc")


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_settings_from_form():
    s = JobSettings.from_form({"model": "sony", "crf": "", "lossless": "on",
                               "temporal_radius": "2", "previews": "true", "ignored": "x"})
    assert (s.model, s.crf, s.lossless, s.temporal_radius, s.previews) == \
        ("sony", None, True, 2, True)
    with pytest.raises(ValueError):
        JobSettings.from_form({"model": "nokia"})
    with pytest.raises(ValueError):
        JobSettings.from_form({"lossless": "true", "crf": "10"})
    with pytest.raises(ValueError):
        JobSettings.from_form({"temporal_radius": "-1"})


def test_outcome():
    video = lambda status, error=None: SimpleNamespace(status=status, error=error)  # noqa: E731
    assert summarize_outcome(SimpleNamespace(videos=[video("done")])) == ("done", None)
    state, error = summarize_outcome(SimpleNamespace(videos=[video("done"),
                                                             video("failed", "bad")]))
    assert state == "done" and error.startswith("1 of 2 videos failed") and "bad" in error
    state, error = summarize_outcome(SimpleNamespace(videos=[video("failed", "bad")]))
    assert state == "failed" and "bad" in error


def test_serve_refuses_a_public_host_without_a_token(tmp_path, monkeypatch):
    from nhance_batch.cli import cli

    monkeypatch.delenv("NHANCE_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "explicit --token" in result.output
    assert not (tmp_path / "jobs").exists()
