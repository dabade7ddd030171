"""The enhancer's autotuned path: choice, agreement, the user cache (hit, miss, changed key),
the lock that makes concurrent processes agree, and the --jit / batch overrides."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from nhance_batch.config import ModelConfig
from nhance_batch.model import autotune
from nhance_batch.model.autotune import AutotuneCache, Candidate, Decision


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_builder(clock: FakeClock, cost: dict[tuple[bool, int], float],
                 offset: dict[tuple[bool, int], float] | None = None, calls=None):
    """Candidates whose pass costs ``cost[(jit, batch)]`` seconds per frame on ``clock`` and
    whose output is the input scaled to [0, 1] (plus ``offset``)."""
    offset = offset or {}

    def build(candidate: Candidate, shape, dtype):
        if calls is not None:
            calls.append(candidate.label)
        key = (candidate.jit, candidate.batch)
        clock.now += 0.5  # "compiling"

        def fn(x):
            clock.now += cost[key] * len(x)
            return x.astype(np.float32) / 255.0 + offset.get(key, 0.0)

        return fn

    return build


FRAMES = np.random.default_rng(1).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
ALL = {(j, b): 0.1 for j in (False, True) for b in autotune.BATCH_SIZES}


def test_tune_keeps_the_fastest_mode_then_batch():
    clock = FakeClock()
    cost = {**ALL, (True, 1): 0.05, (True, 2): 0.05, (True, 4): 0.03, (True, 8): 0.04}
    decision = autotune.tune(fake_builder(clock, cost), FRAMES, budget_s=100, clock=clock)
    assert (decision.jit, decision.batch_size, decision.source) == (True, 4, "tuned")
    assert decision.path == "xla" and decision.label == "xla/b4"
    assert decision.seconds_per_frame["xla/b4"] == pytest.approx(0.03)
    assert decision.seconds_per_frame["graph/b1"] == pytest.approx(0.1)
    assert "graph/b4" not in decision.seconds_per_frame  # batch sizes only with the winner


def test_tune_prefers_the_smaller_batch_among_equally_fast():
    clock = FakeClock()
    cost = {**ALL, (False, 1): 0.100, (False, 2): 0.099, (False, 4): 0.1005, (False, 8): 0.08}
    decision = autotune.tune(fake_builder(clock, cost), FRAMES, budget_s=100, clock=clock)
    assert decision.label == "graph/b8"  # 20% faster is not a tie
    cost[(False, 8)] = 0.098  # 2% faster: within TIE of b1, so the smallest batch wins
    decision = autotune.tune(fake_builder(clock, cost), FRAMES, budget_s=100, clock=clock)
    assert decision.label == "graph/b1"


def test_tune_drops_a_candidate_that_disagrees():
    clock = FakeClock()
    cost = {**ALL, (True, 1): 0.01}
    # 2/255 off: more than 1 LSB from the reference (graph/b1, the first candidate)
    decision = autotune.tune(fake_builder(clock, cost, offset={(True, 1): 2.0 / 255}), FRAMES,
                             budget_s=100, clock=clock)
    assert decision.jit is False
    assert "xla/b1" in decision.dropped and "LSB" in decision.dropped["xla/b1"]
    # within 1 LSB it stays, and wins
    decision = autotune.tune(fake_builder(clock, cost, offset={(True, 1): 0.9 / 255}), FRAMES,
                             budget_s=100, clock=clock)
    assert decision.label == "xla/b1" and not decision.dropped


def test_tune_stays_within_its_budget():
    clock = FakeClock()
    calls: list[str] = []
    decision = autotune.tune(fake_builder(clock, ALL, calls=calls), FRAMES, budget_s=1.2,
                             clock=clock)
    # both modes are always compared; then the budget stops adding batch sizes
    assert calls[:2] == ["graph/b1", "xla/b1"]
    assert len(calls) < 2 + 3
    assert decision.source == "tuned"


def test_jit_override_and_fixed_batch_are_not_timed():
    clock = FakeClock()
    calls: list[str] = []
    build = fake_builder(clock, ALL, calls=calls)
    fixed = autotune.tune(build, FRAMES, jit="on", batch=2, clock=clock)
    assert (fixed.jit, fixed.batch_size, fixed.source) == (True, 2, "fixed") and not calls
    off = autotune.tune(build, FRAMES, jit="off", budget_s=100, clock=clock)
    assert off.jit is False and all(label.startswith("graph/") for label in calls)
    assert set(off.seconds_per_frame) == {f"graph/b{b}" for b in autotune.BATCH_SIZES}


@pytest.mark.parametrize("value, mode", [(True, "on"), (False, "off"), ("auto", "auto"),
                                         ("OFF", "off"), (None, "auto")])
def test_jit_mode(value, mode):
    assert autotune.jit_mode(value) == mode


def test_jit_mode_refuses_other_values():
    with pytest.raises(ValueError, match="on, off or auto"):
        autotune.jit_mode("sometimes")


def test_proxy_frames_keep_the_width_and_cut_rows():
    frames = np.zeros((2, 272, 640, 3), np.uint8)
    proxy = autotune.proxy_frames(frames, pixels=32 * 1024, count=8)
    assert proxy.shape == (8, 52, 640, 3)
    small = autotune.proxy_frames(np.zeros((1, 48, 64, 3), np.uint8), pixels=32 * 1024)
    assert small.shape == (8, 48, 64, 3)


def key(**changes) -> str:
    values = dict(device="cpu: X", backend="tensorflow 9", model="iphone",
                  precision="float32", height=272, width=640, dtype="uint8")
    return autotune.cache_key(**{**values, **changes})


def test_cache_key_buckets_shapes_and_separates_what_matters():
    assert key(height=272, width=640) == key(height=260, width=630)  # same 32-px bucket
    assert key(height=272) != key(height=300)
    for change in (dict(device="cpu: Y"), dict(backend="jax 1"), dict(model="sony"),
                   dict(precision="bfloat16"), dict(dtype="uint16"), dict(jit="off")):
        assert key(**change) != key()


def test_decide_cache_miss_then_hit_then_changed_key(tmp_path):
    cache = AutotuneCache(tmp_path / "autotune.json")
    calls: list[str] = []
    cost = {**ALL, (False, 2): 0.01}

    def decide(k):
        clock = FakeClock()
        return autotune.decide(fake_builder(clock, cost, calls=calls), FRAMES, key=k,
                               cache=cache, budget_s=100, clock=clock)

    first = decide(key())
    assert first.source == "tuned" and first.label == "graph/b2" and calls
    stored = json.loads((tmp_path / "autotune.json").read_text())
    assert stored["entries"][key()]["batch_size"] == 2
    calls.clear()
    again = decide(key())
    assert again.source == "cache" and again.label == "graph/b2" and calls == []
    changed = decide(key(device="cpu: another model"))
    assert changed.source == "tuned" and calls
    assert len(json.loads((tmp_path / "autotune.json").read_text())["entries"]) == 2


def test_a_corrupt_cache_is_a_miss(tmp_path):
    path = tmp_path / "autotune.json"
    path.write_text("{not json")
    cache = AutotuneCache(path)
    assert cache.get(key()) is None
    clock = FakeClock()
    decision = autotune.decide(fake_builder(clock, ALL), FRAMES, key=key(), cache=cache,
                               budget_s=100, clock=clock)
    assert decision.source == "tuned" and AutotuneCache(path).get(key()).source == "cache"


def test_concurrent_deciders_tune_once_and_agree(tmp_path):
    """Two actors missing the same key: one tunes under the lock, the other reads its
    decision, so both run the same path."""
    cache_path = tmp_path / "autotune.json"
    calls: list[str] = []
    results: list[Decision] = []
    gate = threading.Event()

    def slow_builder(candidate, shape, dtype):
        calls.append(candidate.label)
        gate.wait(5)
        return lambda x: x.astype(np.float32) / 255.0

    def worker():
        results.append(autotune.decide(slow_builder, FRAMES, key=key(), batch=4,
                                       cache=AutotuneCache(cache_path), budget_s=0.5))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    assert {r.source for r in results} == {"tuned", "cache"}
    assert results[0].label == results[1].label
    assert calls.count("graph/b4") == 1  # the second one never timed anything


# -- the real enhancer ------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NHANCE_AUTOTUNE_S", "3")
    return AutotuneCache(tmp_path / "autotune.json")


def _weights():
    from nhance_batch.model.dped import DPEDWeights

    return DPEDWeights.random(3)


def test_enhancer_tunes_once_per_shape_and_candidates_agree(cache, real_frame):
    from nhance_batch.model.enhancer import Enhancer

    frames = np.ascontiguousarray(real_frame[None, :48, :64])
    enhancer = Enhancer(ModelConfig(jit="auto", batch_size=0), _weights(), cache=cache)
    out = enhancer(frames)
    decision = enhancer.decision(frames)
    assert decision.source == "tuned"
    assert not decision.dropped  # every float32 path agreed within 1 LSB
    assert {"graph/b1", "xla/b1"} <= set(decision.seconds_per_frame)
    described = enhancer.describe()
    assert described["shapes"]["64x48"] == {"path": decision.path,
                                            "batch_size": decision.batch_size,
                                            "source": "tuned"}
    # a second enhancer (another actor, a later run) reads the cache: same path, same output
    other = Enhancer(ModelConfig(jit="auto", batch_size=0), _weights(), cache=cache)
    np.testing.assert_array_equal(other(frames), out)
    assert other.decision(frames).source == "cache"
    assert other.decision(frames).label == decision.label


@pytest.mark.parametrize("jit, path", [("on", "xla"), ("off", "graph")])
def test_enhancer_jit_override(cache, jit, path):
    from nhance_batch.model.enhancer import Enhancer

    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    enhancer = Enhancer(ModelConfig(jit=jit, batch_size=2), _weights(), cache=cache)
    enhancer(frames)
    decision = enhancer.decision(frames)
    assert (decision.path, decision.batch_size, decision.source) == (path, 2, "fixed")
    assert {key[3] for key in enhancer._compiled} == {jit == "on"}
    assert not cache.path.exists()  # nothing was timed or cached


def test_enhancer_jit_off_tunes_only_the_batch(cache):
    from nhance_batch.model.enhancer import Enhancer

    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    enhancer = Enhancer(ModelConfig(jit="off", batch_size=0), _weights(), cache=cache)
    enhancer(frames)
    decision = enhancer.decision(frames)
    assert decision.path == "graph" and decision.source == "tuned"
    assert all(label.startswith("graph/") for label in decision.seconds_per_frame)


def test_path_info_reports_what_other_precisions_measured(cache):
    from nhance_batch.model.enhancer import Enhancer
    from nhance_batch.pipeline.progress import enhancer_line
    from nhance_batch.pipeline.summary import merge_enhancer

    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    f32 = Enhancer(ModelConfig(jit="off", batch_size=0), _weights(), cache=cache)
    assert "speedup_vs_this" not in f32.path_info(frames)  # nothing measured for bf16 yet
    bf16 = Enhancer(ModelConfig(jit="off", batch_size=0, precision="bfloat16"), _weights(),
                    cache=cache)
    bf16_info = bf16.path_info(frames)
    assert bf16_info["precision"] == "bfloat16" and bf16_info["source"] == "tuned"
    info = f32.path_info(frames)
    expected = (min(f32.decision(frames).seconds_per_frame.values())
                / min(bf16.decision(frames).seconds_per_frame.values()))
    assert info["speedup_vs_this"]["bfloat16"] == pytest.approx(expected, rel=1e-2)
    merged = merge_enhancer(merge_enhancer(None, info), info)
    assert merged["shapes"] == {"32x24": {"path": "graph", "batch_size": info["batch_size"],
                                          "source": "tuned"}}
    line = enhancer_line({**merged, "native_16bit": ["bfloat16"]})
    assert "32x24 graph" in line and "as fast here" in line


def test_merge_enhancer_marks_a_size_whose_chunks_ran_different_paths():
    from nhance_batch.pipeline.summary import merge_enhancer

    a = {"size": "64x48", "path": "graph", "batch_size": 1, "source": "cache",
         "precision": "float32"}
    merged = merge_enhancer(merge_enhancer(None, a), {**a, "path": "xla"})
    assert merged["shapes"]["64x48"]["mixed"] is True
    assert merge_enhancer(merged, None) is merged


def test_bench_reports_the_autotuned_path(tmp_path, monkeypatch, models_dir):
    from click.testing import CliRunner

    from nhance_batch.cli import cli

    monkeypatch.setenv("NHANCE_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    monkeypatch.setenv("NHANCE_AUTOTUNE_S", "2")
    runner = CliRunner()
    decided = runner.invoke(cli, ["bench", "--size", "40x24", "--jit", "off", "--autotune-only",
                                  "--json", "--random-weights"])
    assert decided.exit_code == 0, decided.output
    decision = json.loads(decided.output[decided.output.index("{"):])
    assert decision["path"] == "graph" and decision["source"] == "tuned"
    result = runner.invoke(cli, ["bench", "--size", "40x24", "--jit", "off", "--rounds", "1",
                                 "--json", "--random-weights"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["path"] == "graph" and report["path_source"] == "cache"
    assert report["batch"] == decision["batch_size"]
    assert set(report["autotune"]["seconds_per_frame"]) == set(decision["seconds_per_frame"])
    assert report["device"].startswith(("cpu: ", "gpu: ", "cuda: ", "rocm: "))
