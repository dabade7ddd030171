"""Training pairs: layouts, the by-file split, streamed patches, and bad data refused with
every problem listed, before training (CLI exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image


def _write(path: Path, w: int, h: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_split_is_by_file_and_seeded(pairs_dir):
    from nhance_batch.finetune.pairs import load_pairs

    a = load_pairs(str(pairs_dir), patch=32, val_fraction=0.2, seed=3)
    b = load_pairs(str(pairs_dir), patch=32, val_fraction=0.2, seed=3)
    c = load_pairs(str(pairs_dir), patch=32, val_fraction=0.2, seed=4)
    assert len(a.validation) == round(0.2 * 28) and len(a.train) == 28 - len(a.validation)
    assert not {p.name for p in a.train} & {p.name for p in a.validation}
    assert a.validation == b.validation and a.fingerprint == b.fingerprint
    assert {p.name for p in c.validation} != {p.name for p in a.validation}


def test_dped_layout_is_accepted(tmp_path):
    from nhance_batch.finetune.pairs import load_pairs

    for i in range(3):
        _write(tmp_path / "iphone" / f"{i}.jpg", 120, 110, i)
        _write(tmp_path / "canon" / f"{i}.jpg", 120, 110, 10 + i)
    pairs = load_pairs(str(tmp_path), patch=100, val_fraction=0.34)
    assert (pairs.phone_dir, pairs.target_dir) == ("iphone", "canon")
    assert len(pairs.all) == 3 and len(pairs.validation) == 1


def test_fingerprint_follows_the_bytes(tmp_path):
    from nhance_batch.finetune.pairs import load_pairs

    for i in range(2):
        _write(tmp_path / "phone" / f"{i}.png", 40, 40, i)
        _write(tmp_path / "target" / f"{i}.png", 40, 40, 5 + i)
    before = load_pairs(str(tmp_path), patch=32).fingerprint
    _write(tmp_path / "target" / "1.png", 40, 40, 99)
    assert load_pairs(str(tmp_path), patch=32).fingerprint != before


def test_every_problem_is_listed_at_once(tmp_path):
    from nhance_batch.finetune.pairs import PairError, load_pairs

    _write(tmp_path / "phone" / "good.png", 64, 64)
    _write(tmp_path / "target" / "good.png", 64, 64)
    _write(tmp_path / "phone" / "only_phone.png", 64, 64)
    _write(tmp_path / "target" / "only_target.png", 64, 64)
    _write(tmp_path / "phone" / "sizes.png", 64, 64)
    _write(tmp_path / "target" / "sizes.png", 64, 60)
    _write(tmp_path / "phone" / "small.png", 40, 80)
    _write(tmp_path / "target" / "small.png", 40, 80)
    _write(tmp_path / "phone" / "broken.png", 64, 64)
    (tmp_path / "target" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(PairError) as err:
        load_pairs(str(tmp_path), patch=48)
    text = str(err.value)
    assert len(err.value.problems) == 5, text
    for needle in ("phone/only_phone.png has no target/only_phone.png",
                   "target/only_target.png has no phone/only_target.png",
                   "sizes.png: phone is 64x64 but target is 64x60",
                   "small.png is 40x80, smaller than the 48x48 patch",
                   "target/broken.png is unreadable"):
        assert needle in text


def test_no_pairs_and_no_layout(tmp_path):
    from nhance_batch.finetune.pairs import PairError, load_pairs

    (tmp_path / "phone").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(PairError, match="no image pairs"):
        load_pairs(str(tmp_path), patch=32)
    other = tmp_path / "other"
    (other / "pictures").mkdir(parents=True)
    with pytest.raises(PairError, match="no phone/ and target/ folders"):
        load_pairs(str(other), patch=32)


def test_cli_bad_data_exits_2_before_training(tmp_path, user_models):
    from nhance_batch.cli import cli

    _write(tmp_path / "pairs" / "phone" / "a.png", 64, 64)
    _write(tmp_path / "pairs" / "target" / "a.png", 64, 50)
    _write(tmp_path / "pairs" / "phone" / "b.png", 20, 20)
    _write(tmp_path / "pairs" / "target" / "b.png", 20, 20)
    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(tmp_path / "pairs"),
                                      "--name", "broken", "--patch", "32", "--steps", "5"])
    assert result.exit_code == 2, result.output
    assert "2 problems" in result.output and "a.png: phone is 64x64 but target is 64x50" \
        in result.output and "b.png is 20x20, smaller than the 32x32 patch" in result.output
    assert not (user_models / "broken").exists()


def test_patches_are_colocated_deterministic_and_memory_is_bounded(pairs_dir):
    from nhance_batch.finetune.pairs import load_pairs
    from nhance_batch.finetune.patches import ImageCache, PatchSampler

    pairs = load_pairs(str(pairs_dir), patch=24, val_fraction=0.0)
    one_pair = 96 * 96 * 3 * 2
    cache = ImageCache(max_bytes=3 * one_pair)
    sampler = PatchSampler(pairs.train, patch=24, batch=8, seed=1, cache=cache)
    first = sampler.batch(5)
    for step in range(6, 30):
        sampler.batch(step)
        assert cache.nbytes <= 3 * one_pair
    again = PatchSampler(pairs.train, patch=24, batch=8, seed=1).batch(5)
    sampler.close()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    phone, target, swaps = first
    assert phone.shape == target.shape == (8, 24, 24, 3) and set(np.unique(swaps)) <= {0, 1}
    # co-located: each target patch is found at the same place in some target image
    from nhance_batch.finetune.pairs import read_pair

    images = [read_pair(p) for p in pairs.train]
    for k in range(8):
        tp = np.round(target[k] * 255).astype(np.uint8)
        pp = np.round(phone[k] * 255).astype(np.uint8)
        hits = 0
        for a, b in images:
            windows = np.lib.stride_tricks.sliding_window_view(b, (24, 24, 3))[:, :, 0]
            for y, x in zip(*np.nonzero(np.all(windows == tp, axis=(-3, -2, -1)))):
                hits += np.array_equal(a[y:y + 24, x:x + 24], pp)
        assert hits >= 1, k
