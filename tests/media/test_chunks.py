from __future__ import annotations

import pytest

from nhance_batch.media import Chunk, plan_chunks


def test_empty_video_has_no_chunks() -> None:
    assert plan_chunks(0, 8, 2) == ()


def test_chunks_cover_every_frame_once_with_clamped_context() -> None:
    chunks = plan_chunks(10, 4, 2)
    assert chunks == (
        Chunk(0, 0, 4, 0, 6),
        Chunk(1, 4, 8, 2, 10),
        Chunk(2, 8, 10, 6, 10),
    )
    assert [c.lead for c in chunks] == [0, 2, 2]
    assert [c.trail for c in chunks] == [2, 2, 0]


@pytest.mark.parametrize(
    ("count", "n", "k"), [(1, 1, 0), (7, 1, 3), (7, 7, 0), (7, 100, 5), (30, 8, 12), (31, 4, 0)]
)
def test_plan_invariants(count: int, n: int, k: int) -> None:
    chunks = plan_chunks(count, n, k)
    own = [i for c in chunks for i in range(c.start, c.end)]
    assert own == list(range(count))
    for i, c in enumerate(chunks):
        assert c.index == i
        assert 0 < c.size <= n
        assert c.ctx_start == max(0, c.start - k)
        assert c.ctx_end == min(count, c.end + k)


@pytest.mark.parametrize(("count", "n", "k"), [(-1, 4, 0), (4, 0, 0), (4, 4, -1)])
def test_bad_arguments(count: int, n: int, k: int) -> None:
    with pytest.raises(ValueError):
        plan_chunks(count, n, k)
