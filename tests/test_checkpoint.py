import shutil

import numpy as np
import pytest

from nhance_batch.model.checkpoint import CheckpointError, read_checkpoint
from tests.conftest import MODEL_NAMES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reader_matches_tensorflow(models_dir, name):
    import tensorflow as tf

    prefix = str(models_dir / f"{name}_orig")
    ours = read_checkpoint(prefix)
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    assert set(ours) == set(shapes)
    assert len(ours) == 40
    for key, value in ours.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, reader.get_tensor(key), err_msg=key)


def test_missing_and_broken_files(models_dir, tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint index"):
        read_checkpoint(tmp_path / "nothing")
    (tmp_path / "junk.index").write_bytes(b"not a table at all" * 10)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        read_checkpoint(tmp_path / "junk")
    shutil.copy(models_dir / "iphone_orig.index", tmp_path / "cut.index")
    data = (models_dir / "iphone_orig.data-00000-of-00001").read_bytes()
    (tmp_path / "cut.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="runs past the end"):
        read_checkpoint(tmp_path / "cut")
