"""The enhance stage hands freed heap memory back after every chunk (glibc only)."""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest

from nhance_batch.pipeline.stages import release_free_memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_release_free_memory_returns_freed_heap_pages():
    # 64 KiB blocks stay below glibc's mmap threshold, so they come from the heap; freeing all
    # but the last leaves ~128 MiB free inside the heap, which plain free() keeps.
    blocks = [np.ones(64 * 1024, np.uint8) for _ in range(2048)]
    keep = blocks[-1]
    before = _rss()
    del blocks
    held = _rss()
    assert before - held < 32 << 20, "free() already returned the memory: the test proves nothing"
    assert release_free_memory()
    after = _rss()
    assert held - after > 96 << 20, f"trim released only {(held - after) >> 20} MiB"
    del keep


def test_enhance_stage_trims_after_every_chunk(monkeypatch):
    from types import SimpleNamespace

    from nhance_batch.config import ModelConfig
    from nhance_batch.media import plan_chunks
    from nhance_batch.pipeline import stages

    calls = []
    monkeypatch.setattr(stages, "release_free_memory", lambda: calls.append(1) or True)
    stage = stages.EnhanceStage(ModelConfig(threads=1))
    frames = np.random.default_rng(0).integers(0, 256, (6, 24, 32, 3), dtype=np.uint8)
    for chunk in plan_chunks(6, 3, 0):
        task = SimpleNamespace(chunk=chunk, temporal_radius=0, encode=SimpleNamespace(hdr="keep"),
                               info=SimpleNamespace(color=SimpleNamespace(transfer=None)))
        decoded = stages.Decoded(frames[chunk.ctx_start:chunk.ctx_end], np.arange(3), 0.0)
        assert isinstance(stage.process(task, decoded), stages.Enhanced)
    assert len(calls) == 2
