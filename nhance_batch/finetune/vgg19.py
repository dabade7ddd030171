"""VGG-19 (Simonyan & Zisserman, 2014) up to ``relu5_4`` as Keras 3 ops, from MatConvNet's
``imagenet-vgg-verydeep-19.mat`` (534,904,783 bytes; registry entry ``[content.vgg19]``).

This is the DPED paper's content network: its loss compares ``relu5_4`` features of the enhanced
and target images, fed as ``rgb * 255 - [123.68, 116.779, 103.939]``. Kernels are read as the
DPED training code reads them (MatConvNet stores them width-first: transposed to HWIO), SAME
convolutions, 2x2 max pooling with stride 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE_NAME = "imagenet-vgg-verydeep-19.mat"
FILE_SIZE = 534_904_783
MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
LAYERS = ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
          "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
          "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4",
          "pool3",
          "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4",
          "pool4",
          "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4")
CONTENT_LAYER = "relu5_4"


class VGGFileError(ValueError):
    """The file is not MatConvNet's VGG-19."""


def _field(record, name: str, position: int):
    names = record.dtype.names or ()
    if name in names:
        return record[name]
    return record[position]


def _scalar(value):
    """The single element inside MATLAB's 1x1 cell/struct/char wrappers."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise VGGFileError(f"expected one element, found {value.size}")
        value = value.reshape(-1)[0]
    return value


@dataclass(frozen=True)
class VGG19:
    """Kernels HWIO and biases of the 16 convolutions up to ``conv5_4``."""

    convs: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def load(cls, path: str | Path) -> "VGG19":
        import scipy.io

        try:
            data = scipy.io.loadmat(str(path))
        except Exception as exc:  # noqa: BLE001 - scipy raises many types for a bad file
            raise VGGFileError(f"{path}: not a MATLAB file ({exc})") from exc
        if "layers" not in data:
            raise VGGFileError(f"{path}: no 'layers' (not MatConvNet's VGG-19)")
        layers = data["layers"].reshape(-1)
        convs = {}
        for i, name in enumerate(LAYERS):
            if not name.startswith("conv"):
                continue
            if i >= len(layers):
                raise VGGFileError(f"{path}: only {len(layers)} layers")
            try:
                record = _scalar(layers[i])
                names = record.dtype.names or ()
                recorded = str(_scalar(record["name"])) if "name" in names else name
                weights = _field(record, "weights", 0)
                while weights.dtype == object and weights.size == 1:
                    weights = weights.reshape(-1)[0]
                kernel, bias = (np.asarray(w, np.float32) for w in weights.reshape(-1)[:2])
            except (VGGFileError, AttributeError, IndexError, TypeError, ValueError) as exc:
                raise VGGFileError(f"{path}: layer {i} is not a MatConvNet convolution "
                                   f"({exc})") from exc
            if recorded != name:
                raise VGGFileError(f"{path}: layer {i} is {recorded!r}, expected {name!r}")
            kernel = np.ascontiguousarray(np.transpose(kernel, (1, 0, 2, 3)))
            convs[name] = (kernel, bias.reshape(-1))
        return cls(convs)


def features(rgb01, net: VGG19, layer: str = CONTENT_LAYER):
    """The activations of ``layer`` for RGB images in [0, 1], shape [N, H, W, 3]."""
    from keras import ops

    t = rgb01 * 255.0 - MEAN_RGB
    for name in LAYERS:
        if name.startswith("conv"):
            kernel, bias = net.convs[name]
            t = ops.conv(t, kernel, strides=1, padding="same") + bias
        elif name.startswith("relu"):
            t = ops.relu(t)
        else:
            t = ops.max_pool(t, pool_size=2, strides=2, padding="same")
        if name == layer:
            return t
    raise ValueError(f"unknown VGG-19 layer {layer!r}")
