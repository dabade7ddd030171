"""Sources are never written, outputs never collide or escape, one video's failure stays its own,
hostile and huge inputs are bounded (issue: safety fixes)."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.config import ChunkConfig, EncodeConfig, LimitsConfig, RunConfig
from nhance_batch.media import probe
from nhance_batch.pipeline import stages
from nhance_batch.pipeline.driver import Driver
from nhance_batch.pipeline.executor import SequentialExecutor
from nhance_batch.pipeline.outputs import OutputNames, UnsafeOutput, unsafe_key
from nhance_batch.state.jobstate import read_manifest
from tests.media.makemedia import make_video

SEQ = ["--executor", "sequential", "--lossless", "--chunk-frames", "4", "--temporal-radius",
       "0"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): md5(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def run(*args: str):
    return CliRunner().invoke(cli, ["run", *args, *SEQ])


def small(path: Path, frames: int = 6, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, width=64, height=48, frames=frames, gop=3, **kwargs)


# -- 1. sources are never written ------------------------------------------------------------

def test_output_on_a_single_input_is_refused(tmp_path):
    clip = small(tmp_path / "videos" / "clip.mp4")
    before = tree(tmp_path / "videos")
    result = run(str(clip), str(tmp_path / "videos"))
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "videos") in result.output and "clip.mp4" in result.output
    assert tree(tmp_path / "videos") == before  # nothing written there, not even state


@pytest.mark.parametrize("layout", ["same", "parent", "symlink", "dotdot"])
def test_output_among_the_sources_is_refused(tmp_path, layout):
    videos = tmp_path / "videos"
    small(videos / "a.mp4")
    small(videos / "sub" / "b.mp4")
    output = {"same": videos, "parent": tmp_path,
              "dotdot": videos / "sub" / ".."}.get(layout)
    if layout == "symlink":
        output = tmp_path / "link"
        output.symlink_to(videos)
    before = tree(videos)
    result = run(str(videos if layout != "parent" else videos / "sub"), str(output))
    assert result.exit_code == 2, result.output
    assert "OUTPUT" in result.output and str(output) in result.output
    assert tree(videos) == before


def test_output_inside_the_input_folder_is_fine(tmp_path):
    videos = tmp_path / "videos"
    clip = small(videos / "a.mp4")
    digest = md5(clip)
    result = run(str(videos), str(videos / "enhanced"))
    assert result.exit_code == 0, result.output
    assert md5(clip) == digest
    assert probe(videos / "enhanced" / "a.mp4").frame_count == 6
    assert run(str(videos), str(videos / "enhanced")).exit_code == 0  # outputs never inputs


# -- 2. two inputs never share an output -------------------------------------------------------

def test_container_fallback_does_not_overwrite_another_input(tmp_path):
    videos = tmp_path / "videos"
    small(videos / "a.webm", frames=6, codec="libvpx-vp9")
    small(videos / "a.mkv", frames=9)
    out = tmp_path / "out"
    result = run(str(videos), str(out))
    assert result.exit_code == 0, result.output
    assert probe(out / "a.mkv").frame_count == 9
    assert probe(out / "a.webm.mkv").frame_count == 6
    report = CliRunner().invoke(cli, ["status", str(out), "--json"])
    assert "a.webm.mkv" in report.output and "would collide" in report.output
    outputs = {p: md5(out / p) for p in ("a.mkv", "a.webm.mkv")}
    again = run(str(videos), str(out))
    assert again.exit_code == 0, again.output
    assert {p: md5(out / p) for p in outputs} == outputs  # a rerun changes nothing
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["a.mkv", "a.webm.mkv"]


def test_a_lone_fallback_keeps_the_short_name(tmp_path):
    videos = tmp_path / "videos"
    small(videos / "b.webm", codec="libvpx-vp9")
    assert run(str(videos), str(tmp_path / "out")).exit_code == 0
    assert probe(tmp_path / "out" / "b.mkv").frame_count == 6


def test_names_differing_only_in_case_stay_distinct():
    names = OutputNames(["A.mp4", "a.mp4", "x/Clip.MOV", "x/clip.mov", "solo.mp4"])
    assert names.primary("A.mp4") == ("A.mp4", None)
    other, note = names.primary("a.mp4")
    assert other != "a.mp4" and other.lower() != "a.mp4" and other.endswith(".mp4")
    assert "case" in note
    chosen = {names.primary(r)[0].casefold() for r in ("A.mp4", "a.mp4", "x/Clip.MOV",
                                                       "x/clip.mov", "solo.mp4")}
    assert len(chosen) == 5
    # deterministic: the same inputs in another order give the same names
    again = OutputNames(["solo.mp4", "x/clip.mov", "a.mp4", "x/Clip.MOV", "A.mp4"])
    assert again.primary("a.mp4") == (other, note)


def test_fallback_names_never_collide():
    names = OutputNames(["a.webm", "a.avi", "a.webm.mkv"])
    chosen = {names.name(r, "matroska")[0].casefold() for r in ("a.webm", "a.avi")}
    chosen.add(names.name("a.webm.mkv", "matroska")[0].casefold())
    assert len(chosen) == 3


def test_the_same_file_listed_twice_is_one_input(tmp_path):
    videos = tmp_path / "videos"
    small(videos / "a.mp4")
    out = tmp_path / "out"
    result = run(str(videos) + "/**/*.mp4", str(out))  # ** also matches zero folders
    assert result.exit_code == 0, result.output
    manifest = read_manifest(str(out / "_nhance" / "manifest.parquet"))
    assert [v.relative for v in manifest.videos] == ["a.mp4"]


# -- 4. nothing escapes OUTPUT ---------------------------------------------------------------

@pytest.mark.parametrize("key,why", [("../x.mp4", ".."), ("a/../../x.mp4", ".."),
                                     ("/etc/x.mp4", "absolute"), ("a\\..\\x.mp4", "backslash"),
                                     ("a\x00.mp4", "NUL"), ("C:/x.mp4", "absolute"),
                                     ("_nhance/x.mp4", "_nhance"), ("./x.mp4", ".")])
def test_unsafe_keys_are_named(key, why):
    assert why in unsafe_key(key)


@pytest.mark.parametrize("key", ["a.mp4", "sub/dir/b c.mp4", "..hidden.mp4", "x..y/z.mp4"])
def test_safe_keys_pass(key):
    assert unsafe_key(key) is None


# -- 5. one video's failure stays that video's -----------------------------------------------

def _job(tmp_path, **limits) -> RunConfig:
    videos = tmp_path / "videos"
    small(videos / "good.mp4")
    small(videos / "other.mp4", frames=5)
    return RunConfig(input=str(videos), output=str(tmp_path / "out"),
                     chunk=ChunkConfig(chunk_frames=4, overlap=0), temporal_radius=0,
                     encode=EncodeConfig(lossless=True), limits=LimitsConfig(**limits))


def _run(config: RunConfig):
    executor = SequentialExecutor(config.model)
    return Driver.for_config(config).run(executor)


def test_container_selection_failure_fails_only_that_video(tmp_path, monkeypatch):
    import nhance_batch.media as media

    real = media.plan_output

    def picky(relative, info, encode):
        if relative == "other.mp4":
            raise ValueError("no muxer for this codec")
        return real(relative, info, encode)

    monkeypatch.setattr(media, "plan_output", picky)
    summary = _run(_job(tmp_path))
    by_name = {Path(v.input).name: v for v in summary.videos}
    assert by_name["good.mp4"].status == "done"
    assert by_name["other.mp4"].status == "failed"
    assert "no output container" in by_name["other.mp4"].error
    assert summary.exit_code == 1


def test_refused_part_deletion_is_a_note(tmp_path, monkeypatch):
    from nhance_batch import storage

    def refuse(url, options=None, *, missing_ok=True):
        raise storage.StorageError("deleting: access denied (no DeleteObject)")

    monkeypatch.setattr(storage, "remove", refuse)
    summary = _run(_job(tmp_path))
    assert summary.exit_code == 0
    assert all(v.status == "done" for v in summary.videos)
    assert all("parts kept" in v.note and "DeleteObject" in v.note for v in summary.videos)


def test_upload_failing_after_retries_fails_only_that_video(tmp_path, monkeypatch):
    from nhance_batch import storage

    real = storage.upload

    def flaky(local, url, options=None, **kwargs):
        if "other" in str(url) and "_nhance" not in str(url):
            raise storage.StorageError("uploading: gave up after 6 attempts", transient=True)
        return real(local, url, options, **kwargs)

    monkeypatch.setattr(storage, "upload", flaky)
    summary = _run(_job(tmp_path))
    by_name = {Path(v.input).name: v for v in summary.videos}
    assert by_name["good.mp4"].status == "done"
    assert by_name["other.mp4"].status == "failed" and "gave up" in by_name["other.mp4"].error
    assert summary.exit_code == 1
    assert not (tmp_path / "out" / "other.mp4").exists()


# -- 7. hostile and huge inputs are bounded ----------------------------------------------------

def test_probe_limits_fail_the_video_with_a_clear_error(tmp_path):
    summary = _run(_job(tmp_path, max_frames=5))
    by_name = {Path(v.input).name: v for v in summary.videos}
    assert by_name["other.mp4"].status == "done"
    assert by_name["good.mp4"].status == "failed"
    assert "more than 5 frames" in by_name["good.mp4"].error
    result = run(str(tmp_path / "videos"), str(tmp_path / "out2"), "--max-pixels", "32x32")
    assert result.exit_code == 1
    status = CliRunner().invoke(cli, ["status", str(tmp_path / "out2"), "--json"])
    assert status.output.count("exceed the limit of 1,024 pixels") == 2


def test_enhance_image_refuses_a_disguised_playlist(tmp_path):
    target = small(tmp_path / "secret.mp4")
    fake = tmp_path / "photo.jpg.mp4"
    fake.write_text(f"#EXTM3U\n#EXTINF:1,\n{target}\n#EXT-X-ENDLIST\n")
    result = CliRunner().invoke(cli, ["enhance-image", str(fake), str(tmp_path / "o.png")])
    assert result.exit_code == 2
    assert "hls" in result.output or "playlist" in result.output
    assert not (tmp_path / "o.png").exists()


def test_auto_chunks_shrink_to_one_frame_for_huge_frames():
    from nhance_batch.config import ChunkConfig

    assert ChunkConfig(overlap=3).frames_for(7680, 4320, 1000.0) == 1
    assert ChunkConfig(overlap=0).frames_for(3840, 2160, 1000.0) < 16
    budget = 2 << 30
    for width, height in ((3840, 2160), (7680, 4320)):
        frames = ChunkConfig(overlap=3).frames_for(width, height, 1000.0)
        assert frames == 1 or (frames + 6) * width * height * 20 <= budget


# -- 8. job state scales -----------------------------------------------------------------------

def test_a_chunk_task_carries_only_its_own_timestamps(tmp_path):
    from dataclasses import replace

    from nhance_batch.media import chunk_info, decode_chunk, plan_chunks

    clip = small(tmp_path / "c.mp4", frames=20)
    info = probe(clip)
    plan = plan_chunks(info.frame_count, 4, 1)
    for chunk in plan:  # the same frames as with the whole timeline
        windowed = decode_chunk(clip, chunk_info(info, chunk), chunk)
        whole = decode_chunk(clip, info, chunk)
        assert (windowed.frames == whole.frames).all() and (windowed.pts == whole.pts).all()
    long_info = replace(info, pts=tuple(range(0, 2_000_000, 2)), frame_count=1_000_000)
    chunk = plan_chunks(long_info.frame_count, 110, 3)[5000]
    task = stages.ChunkTask(0, stages.Source("x.mp4"), chunk_info(long_info, chunk), chunk,
                            "p.mp4", 3, EncodeConfig())
    assert len(pickle.dumps(task)) < 20_000  # the whole timeline alone pickles to megabytes
    assert len(pickle.dumps(long_info)) > 1_000_000
