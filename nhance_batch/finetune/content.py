"""The content network of fine-tuning, by name: ``efficientnet-lite0`` (default), ``vgg19`` or
``none``. Each is a frozen ImageNet network whose features the content loss compares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

CONTENT_NETWORKS = ("efficientnet-lite0", "vgg19", "none")
DEFAULT_CONTENT = "efficientnet-lite0"


@dataclass(frozen=True)
class ContentNetwork:
    name: str
    features: Callable[[Any], Any] | None  # RGB [N, H, W, 3] in [0, 1] -> feature map
    source: str                            # where the weights came from


def load_content(name: str, *, download: bool = True) -> ContentNetwork:
    """Load the named content network (``vgg19`` resolves like a model: ``NHANCE_MODELS``,
    the cache, or a verified download)."""
    if name == "none":
        return ContentNetwork("none", None, "")
    if name == "efficientnet-lite0":
        from nhance_batch.finetune import efficientnet

        path = efficientnet.default_weights_path()
        net = efficientnet.EfficientNetLite0.load(path)
        return ContentNetwork(name, lambda x: efficientnet.features(x, net), str(path))
    if name == "vgg19":
        from nhance_batch.finetune import vgg19
        from nhance_batch.model.registry import resolve_content

        path = resolve_content("vgg19", download=download)
        net = vgg19.VGG19.load(path)
        return ContentNetwork(name, lambda x: vgg19.features(x, net), str(path))
    raise ValueError(f"unknown content network {name!r}; use one of {', '.join(CONTENT_NETWORKS)}")
