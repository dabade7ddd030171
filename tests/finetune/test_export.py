"""The exported checkpoint: TF1 format, readable by our reader and by TensorFlow, the same 40
variables, and a zero-step fine-tune that reproduces its base bit for bit."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner


def test_written_checkpoint_reads_back_in_both_readers(models_dir, tmp_path):
    from nhance_batch.finetune.export import checkpoint_bytes
    from nhance_batch.model.checkpoint import read_checkpoint

    base = read_checkpoint(models_dir / "sony_orig")
    changed = {k: (v + np.float32(0.5) if k.endswith("W3") else v) for k, v in base.items()}
    index, data = checkpoint_bytes(changed)
    (tmp_path / "m.index").write_bytes(index)
    (tmp_path / "m.data-00000-of-00001").write_bytes(data)
    ours = read_checkpoint(tmp_path / "m")
    assert sorted(ours) == sorted(base) and len(ours) == 40
    for name, value in changed.items():
        assert ours[name].dtype == np.float32 and ours[name].shape == value.shape
        np.testing.assert_array_equal(ours[name], value)

    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(tmp_path / "m"))  # checks every block and tensor CRC
    assert reader.get_variable_to_shape_map() == {k: list(v.shape) for k, v in base.items()}
    for name, value in changed.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)


def test_zero_step_finetune_is_the_base_model_bit_for_bit(models_dir, pairs_dir, user_models,
                                                          real_frame, tmp_path):
    from nhance_batch.cli import cli
    from nhance_batch.config import ModelConfig
    from nhance_batch.model.checkpoint import read_checkpoint
    from nhance_batch.model.enhancer import Enhancer
    from nhance_batch.model.registry import resolve

    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(pairs_dir), "--name", "same",
                                      "--steps", "0", "--patch", "32", "--content", "none"])
    assert result.exit_code == 0, result.output
    folder = user_models / "same"
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.json", "same.data-00000-of-00001", "same.index"]
    found = resolve("same")
    assert found.source == "user" and found.prefix == folder / "same"
    base, tuned = read_checkpoint(models_dir / "iphone_orig"), read_checkpoint(found.prefix)
    assert sorted(base) == sorted(tuned)
    for name in base:
        assert base[name].tobytes() == tuned[name].tobytes(), name
    a = Enhancer(ModelConfig(name="iphone", batch_size=1))(real_frame)
    b = Enhancer(ModelConfig(name="same", batch_size=1))(real_frame)
    assert np.array_equal(a, b)

    info = json.loads((folder / "model.json").read_text())
    assert info["steps"] == 0 and info["base"]["name"] == "iphone"
    assert info["metrics"]["base"] == info["metrics"]["finetuned"]
    assert info["loss_weights"] == {"content": 10.0, "color": 0.5, "texture": 1.0, "tv": 2000.0}
    assert len(info["data"]["fingerprint"]) == 64 and info["data"]["validation_pairs"] == 3
    from nhance_batch.checksum import file_sha256

    assert info["files"] == {n: file_sha256(folder / n) for n in info["files"]}

    # the same name again is refused (no silent overwrite)
    again = CliRunner().invoke(cli, ["finetune", "--pairs", str(pairs_dir), "--name", "same",
                                     "--steps", "0", "--patch", "32", "--content", "none"])
    assert again.exit_code == 2 and "already exists" in again.output

    # a damaged file is caught by the sha256 in model.json
    data = folder / "same.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 1
    data.write_bytes(bytes(raw))
    from nhance_batch.model.registry import ModelError
    import pytest

    with pytest.raises(ModelError, match="sha256"):
        resolve("same")
