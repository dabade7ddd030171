"""The content networks: the EfficientNet-Lite0 port classifies real photos right, its .pth
reader refuses code, and VGG-19 reads MatConvNet's layout and is registered for download."""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest


def _classify(rgb: np.ndarray) -> list[int]:
    from PIL import Image

    from nhance_batch.finetune import efficientnet

    net = efficientnet.EfficientNetLite0.load()
    x = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BICUBIC), np.float32)[None] / 255
    logits = np.asarray(efficientnet.logits(x, net))[0]
    return list(np.argsort(-logits)[:3])


def test_efficientnet_lite0_sees_a_cat_in_chelsea():
    import skimage.data

    top = _classify(skimage.data.chelsea())
    assert 281 <= top[0] <= 285, top  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_efficientnet_lite0_sees_a_cup_in_coffee():
    import skimage.data

    top = _classify(skimage.data.coffee())
    assert top[0] in (967, 968), top  # espresso, cup


def test_content_features_are_mid_level_at_one_sixteenth():
    from nhance_batch.finetune import efficientnet

    net = efficientnet.EfficientNetLite0.load()
    f = np.asarray(efficientnet.features(np.full((2, 64, 48, 3), 0.5, np.float32), net))
    assert f.shape == (2, 4, 3, 112)


def _legacy_pth(payload) -> bytes:
    """A file in PyTorch's legacy layout whose state-dict pickle is ``payload``."""
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(obj, out, protocol=2)
    out.write(payload)
    pickle.dump([], out, protocol=2)
    return out.getvalue()


def test_torch_reader_refuses_code_in_a_weights_file(tmp_path):
    from nhance_batch.finetune.efficientnet import TorchFileError, read_torch_state_dict

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_pth(pickle.dumps({"w": Evil()}, protocol=2)))
    with pytest.raises(TorchFileError, match="refusing"):
        read_torch_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_torch_reader_honours_strides(tmp_path):
    """A transposed tensor (non-contiguous strides) comes back in its logical layout."""
    from nhance_batch.finetune.efficientnet import read_torch_state_dict

    # hand-written pickle: OrderedDict({"w": _rebuild_tensor_v2(storage '0', 0, (2, 3), (1, 2))})
    body = (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02"
            b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04"
            b"ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07"
            b"K\x06NtQK\x00K\x02K\x03\x86K\x01K\x02\x86\x89h\x00)Rtq\x08Rq\x09s.")
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(obj, out, protocol=2)
    out.write(body)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", 6) + np.arange(6, dtype="<f4").tobytes())
    path = tmp_path / "t.pth"
    path.write_bytes(out.getvalue())
    w = read_torch_state_dict(path)["w"]
    np.testing.assert_array_equal(w, np.arange(6, dtype=np.float32).reshape(3, 2).T)


def _fake_vgg_mat(path, channels: int = 4, seed: int = 0):
    """MatConvNet's layout (a 1xN cell of 1x1 structs with name/type/weights) with small
    random kernels stored width-first, as the published file stores them."""
    import scipy.io

    from nhance_batch.finetune.vgg19 import LAYERS

    rng = np.random.default_rng(seed)
    layers = np.empty((1, len(LAYERS)), dtype=object)
    whwo = {}
    cin = 3
    for i, name in enumerate(LAYERS):
        record = {"name": name, "type": name.rstrip("_0123456789")}
        if name.startswith("conv"):
            kernel = rng.standard_normal((3, 3, cin, channels)).astype(np.float32) * 0.2
            bias = rng.standard_normal((1, channels)).astype(np.float32) * 0.1
            cell = np.empty((1, 2), dtype=object)
            cell[0, 0], cell[0, 1] = kernel, bias
            record["weights"] = cell
            whwo[name] = (kernel, bias.reshape(-1))
            cin = channels
        else:
            record["weights"] = np.empty((0, 0), dtype=object)
        layers[0, i] = record
    scipy.io.savemat(path, {"layers": layers})
    return whwo


def _reference_features(x: np.ndarray, whwo: dict) -> np.ndarray:
    """relu5_4 with scipy: SAME correlation over the HWIO (= transposed WHIO) kernels."""
    from scipy.signal import correlate

    from nhance_batch.finetune.vgg19 import LAYERS, MEAN_RGB

    t = x[0] * 255.0 - MEAN_RGB
    for name in LAYERS:
        if name.startswith("conv"):
            kernel, bias = whwo[name]
            k = np.transpose(kernel, (1, 0, 2, 3))
            t = np.stack([sum(correlate(t[..., c], k[..., c, o], mode="same")
                              for c in range(t.shape[-1])) for o in range(k.shape[-1])],
                         axis=-1) + bias
        elif name.startswith("relu"):
            t = np.maximum(t, 0)
        else:
            h, w = -(-t.shape[0] // 2) * 2, -(-t.shape[1] // 2) * 2
            padded = np.full((h, w, t.shape[2]), -np.inf)
            padded[:t.shape[0], :t.shape[1]] = t
            t = padded.reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3))
    return t


def test_vgg19_reads_matconvnet_layout_and_matches_a_reference(tmp_path):
    from nhance_batch.finetune import vgg19

    path = tmp_path / vgg19.FILE_NAME
    whwo = _fake_vgg_mat(path)
    net = vgg19.VGG19.load(path)
    x = np.random.default_rng(1).random((1, 32, 48, 3)).astype(np.float32)
    got = np.asarray(vgg19.features(x, net))[0]
    want = _reference_features(x, whwo)
    assert got.shape == (2, 3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2 * np.abs(want).max())


def test_vgg19_is_registered_and_verified_like_a_model(tmp_path, monkeypatch):
    from nhance_batch.model import registry

    spec = registry.load_content_registry()["vgg19"]
    assert spec.url_prefix.startswith("https://") and spec.checkpoint == "imagenet-vgg-verydeep-19.mat"
    assert dict(spec.files)["imagenet-vgg-verydeep-19.mat"] == \
        "abdb57167f82a2a1fbab1e1c16ad9373411883f262a1a37ee5db2e6fb0044695"
    (tmp_path / "imagenet-vgg-verydeep-19.mat").write_bytes(b"not the network")
    monkeypatch.setenv("NHANCE_MODELS", str(tmp_path))
    with pytest.raises(registry.ModelError, match="sha256"):
        registry.resolve_content("vgg19")
    assert "vgg19" not in registry.load_registry()[1]  # not offered as a generator


def test_finetune_with_vgg19_refuses_a_file_that_is_not_the_published_one(
        models_dir, pairs_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from nhance_batch.cli import cli

    folder = tmp_path / "models"
    folder.mkdir()
    for f in models_dir.glob("iphone_orig.*"):
        (folder / f.name).symlink_to(f)
    (folder / "imagenet-vgg-verydeep-19.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    monkeypatch.setenv("NHANCE_MODELS", str(folder))
    monkeypatch.setenv("NHANCE_USER_MODELS", str(tmp_path / "user"))
    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(pairs_dir), "--name", "v",
                                      "--content", "vgg19", "--patch", "32", "--steps", "1"])
    assert result.exit_code == 2, result.output
    assert "vgg19" in result.output and "sha256" in result.output
    assert not (tmp_path / "user" / "v").exists()
