"""The gains series of a manifest's video record: per channel for the report, per-frame means
for the web page's flicker plot, in chunk order whatever order the records are in."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from nhance_batch.analysis.gains import mean_gains, rgb_gains
from nhance_batch.state.manifest import Gains


def _chunk(index, before, after):
    return SimpleNamespace(index=index, gains_before=None if before is None else Gains(before),
                           gains_after=None if after is None else Gains(after))


def test_rgb_gains_concatenate_the_chunks_in_index_order():
    video = SimpleNamespace(chunks=[_chunk(1, [7, 8, 9], [1, 1, 1]),
                                    _chunk(0, [1, 2, 3, 4, 5, 6], [2, 2, 2, 3, 3, 3])])
    before, after = rgb_gains(video)
    assert before.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert after.tolist() == [[2, 2, 2], [3, 3, 3], [1, 1, 1]]


def test_rgb_gains_need_every_chunk_and_whole_equal_frames():
    assert rgb_gains(SimpleNamespace(chunks=[])) is None
    assert rgb_gains(SimpleNamespace(chunks=[_chunk(0, [1, 2, 3], [1, 2, 3]),
                                             _chunk(1, None, None)])) is None
    assert rgb_gains(SimpleNamespace(chunks=[_chunk(0, [1, 2, 3, 4], [1, 2, 3, 4])])) is None
    assert rgb_gains(SimpleNamespace(chunks=[_chunk(0, [1, 2, 3], [1, 2, 3, 4, 5, 6])])) is None


def test_mean_gains_average_each_frame_and_skip_chunks_without_gains():
    video = SimpleNamespace(chunks=[_chunk(2, [3, 3, 6], [1, 2, 3]),
                                    _chunk(1, None, None),
                                    _chunk(0, [0, 0, 3, 1, 2, 3], [1, 1, 1, 2, 2, 2])])
    assert mean_gains(video) == {"before": [1.0, 2.0, 4.0], "after": [1.0, 2.0, 2.0]}


def test_mean_gains_drop_a_partial_frame_and_match_the_python_mean():
    values = np.random.default_rng(3).random(3 * 5 + 2)
    got = mean_gains(SimpleNamespace(chunks=[_chunk(0, values, values)]))
    expected = [sum(values[i:i + 3].tolist()) / 3 for i in range(0, 15, 3)]
    assert got == {"before": expected, "after": expected}


def test_mean_gains_none_without_any_recorded():
    assert mean_gains(SimpleNamespace(chunks=[_chunk(0, None, [1, 2, 3])])) is None
