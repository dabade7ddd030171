"""The one atomic write (storage.write_bytes, storage.atomic_local_file): the destination holds
the old content or the new, never a part; no temporary file survives; on a local disk the file
and then its folder are fsynced around the rename; on a store it is one whole-object put."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from nhance_batch import storage


def _names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_bytes_replaces_the_content_and_leaves_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "er" / "summary.json"  # missing folders are made
    storage.write_bytes(str(dest), b"old")
    assert dest.read_bytes() == b"old"
    storage.write_bytes(dest.as_uri(), b"new content")
    assert dest.read_bytes() == b"new content"
    assert _names(dest.parent) == ["summary.json"]


def test_the_destination_changes_only_at_the_commit(tmp_path: Path) -> None:
    dest = tmp_path / "model.json"
    dest.write_bytes(b"old")
    with storage.atomic_local_file(dest) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)  # beside it: the rename stays on one disk
        with open(tmp, "wb") as f:
            f.write(b"new, written slowly")
        assert dest.read_bytes() == b"old"  # a reader still sees the old whole file
    assert dest.read_bytes() == b"new, written slowly"
    assert _names(tmp_path) == ["model.json"]


def test_an_error_keeps_the_old_content_and_removes_the_temp(tmp_path: Path) -> None:
    dest = tmp_path / "model.json"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with storage.atomic_local_file(dest) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk on fire")
    assert dest.read_bytes() == b"old"
    assert _names(tmp_path) == ["model.json"]


def test_a_failed_rename_keeps_the_old_content_and_removes_the_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "summary.json"
    dest.write_bytes(b"old")

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "refused", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        storage.write_bytes(str(dest), b"new")
    monkeypatch.undo()
    assert dest.read_bytes() == b"old"
    assert _names(tmp_path) == ["summary.json"]


def test_the_file_then_its_folder_are_fsynced_around_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("replace", os.path.basename(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    storage.write_bytes(str(tmp_path / "summary.json"), b"{}")
    monkeypatch.undo()
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    temp = events[1][1]
    assert temp.startswith("summary.json.tmp-")
    assert events[0][1] == str(tmp_path / temp)  # the file's content first
    assert events[2][1] == str(tmp_path)  # then the folder that holds the new name


def test_upload_into_a_local_folder_is_committed_the_same_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "scratch.mp4"
    src.write_bytes(b"part")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    assert storage.upload(str(src), str(out / "clip.mp4"), move=False) == 4
    monkeypatch.undo()
    assert (out / "clip.mp4").read_bytes() == b"part" and src.exists()
    assert synced[-1] == str(out) and _names(out) == ["clip.mp4"]


def test_write_bytes_on_a_memory_store_is_one_whole_object() -> None:
    import fsspec

    url = f"memory://atomic-{uuid.uuid4().hex[:8]}/job/summary.json"
    storage.write_bytes(url, b"old")
    storage.write_bytes(url, b"new")
    assert storage.read_bytes(url) == b"new"
    fs = fsspec.filesystem("memory")
    assert fs.ls(url.split("://", 1)[1].rsplit("/", 1)[0], detail=False) == [
        "/" + url.split("://", 1)[1]]  # no temporary object beside it


def test_write_bytes_on_object_stores(store) -> None:  # type: ignore[no-untyped-def]
    url = store.key("job", "model.json")
    storage.write_bytes(url, b"old", store.storage_options)
    storage.write_bytes(url, b'{"new": true}', store.storage_options)
    assert storage.read_bytes(url, store.storage_options) == b'{"new": true}'
    fs, path = storage.resolve(store.key("job"), store.storage_options)
    fs.invalidate_cache()
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] == ["model.json"]
