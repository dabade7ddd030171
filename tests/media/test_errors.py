"""Unreadable and hostile inputs: each must raise MediaError naming the file and the reason."""

from __future__ import annotations

import os
import pickle
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nhance_batch.media import MediaError, probe
from nhance_batch.media import safe_open
from tests.media.makemedia import AUDIO_RATE


def _refused(path: Path, *words: str) -> MediaError:
    with pytest.raises(MediaError) as info:
        probe(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    for word in words:
        assert word in err.reason, err.reason
    return err


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.mp4", "not found")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    err = _refused(path, "empty")
    copy = pickle.loads(pickle.dumps(err))  # errors travel between worker processes
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("just some text, not a video\n" * 20)
    _refused(path, "not a readable media file")


def test_directory(tmp_path: Path) -> None:
    _refused(tmp_path, "not a regular file")


def test_truncated_mp4(clip: Callable[[str], Path], tmp_path: Path) -> None:
    data = clip("cfr.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # x264 + mp4: moov at the end, so it is gone
    _refused(path, "not a readable media file")


def test_audio_only(tmp_path: Path) -> None:
    import av
    import numpy as np

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=AUDIO_RATE)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    _refused(path, "no video stream")


def _hls(target: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n"


def _ffconcat(target: str) -> str:
    return f"ffconcat version 1.0\nfile '{target}'\n"


@pytest.mark.parametrize(("script", "demuxer"), [(_hls, "hls"), (_ffconcat, "concat")])
@pytest.mark.parametrize("relative", [True, False])
def test_playlists_disguised_as_video_are_refused(
    clip: Callable[[str], Path], tmp_path: Path, script: Callable[[str], str], demuxer: str, relative: bool
) -> None:
    real = tmp_path / "real.mp4"
    shutil.copy(clip("cfr.mp4"), real)
    path = tmp_path / "innocent.mp4"
    path.write_text(script("real.mp4" if relative else str(real)))
    _refused(path, demuxer)


@contextmanager
def _open_detector(fifo: Path) -> Iterator[list[bool]]:
    """Record whether anyone opens ``fifo`` for reading while the block runs.

    Opening a FIFO for writing without blocking only succeeds while a reader
    has it open (or is waiting to); the watcher then closes it at once, which
    hands the reader an empty file instead of leaving it blocked.
    """
    os.mkfifo(fifo)
    opened: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                stop.wait(0.002)
                continue
            opened.append(True)
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize(
    ("name", "script", "demuxer"),
    # FFmpeg 8 itself ignores HLS in files not named .m3u8, so use the name it follows.
    [("list.m3u8", _hls, "hls"), ("innocent.mp4", _ffconcat, "concat")],
)
def test_nothing_outside_the_input_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: Callable[[str], str], demuxer: str
) -> None:
    path = tmp_path / name
    path.write_text(script("target.mp4"))

    # Control: plain PyAV does follow the script and opens the referenced file.
    import av

    with _open_detector(tmp_path / "target.mp4") as opened:
        with pytest.raises(av.FFmpegError), av.open(str(path)):
            pass
    assert opened, "the detector should see FFmpeg following the script"

    # With the text sniffing switched off, FFmpeg itself must refuse the demuxer.
    monkeypatch.setattr(safe_open, "_sniff_script", lambda head: None)
    with _open_detector(tmp_path / "target2.mp4") as opened:
        path.write_text(script("target2.mp4"))
        err = _refused(path, demuxer, "not allowed")
    assert not opened, f"the referenced file was opened: {err}"
