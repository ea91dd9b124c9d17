"""Every service started offline, as tests start them: random weights of tiny configurations where
a service runs a model (the hubs are out of reach, and tests must not wait on a real model), small
work per image elsewhere.

:func:`offline_service_env` is the environment for one registered service, given a models folder it
may write label files into; :func:`offline_models` sets the same model environment in this process,
for services built in it. The per-service quick settings of the test stacks
(:data:`ambience_support.stacks.QUICK_SERVICE_ENV`) are part of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambience_support.stacks import QUICK_SERVICE_ENV
from ambience_support.tiny_models import TINY_COCA

#: Per model service: the random weights of a tiny configuration.
RANDOM_MODELS: dict[str, dict[str, str]] = {
    "global_features": {
        "AMBIENCE_GLOBAL_FEATURES_MODEL": "test_vit",
        "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": "random",
    },
    "captioner": {
        "AMBIENCE_CAPTIONER_MODEL": "tiny-coca",
        "AMBIENCE_CAPTIONER_MODEL_CONFIG_PATH": str(TINY_COCA),
        "AMBIENCE_CAPTIONER_WEIGHTS": "random",
        "AMBIENCE_CAPTIONER_MAX_LENGTH": "6",
    },
    "tagger": {"AMBIENCE_TAGGER_WEIGHTS": "random"},
}


def write_places_labels(folder: Path, count: int = 365) -> tuple[Path, Path]:
    """Label files in the form CSAIL publishes them (``categories_places365.txt``: "/a/airfield 0";
    ``IO_places365.txt``: 1 indoor, 2 outdoor), with made-up scene names: the tagger's random
    weights need the files, not the names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"/{'abcdefghijklmnopqrstuvwxyz'[i % 26]}/scene_{i:03d}" for i in range(count)]
    categories, io = folder / "categories_places365.txt", folder / "IO_places365.txt"
    categories.write_text("".join(f"{name} {i}\n" for i, name in enumerate(names)))
    io.write_text("".join(f"{name} {1 + (i % 2)}\n" for i, name in enumerate(names)))
    return categories, io


def offline_service_env(name: str, models_dir: Path) -> dict[str, str]:
    """The environment that starts registered service ``name`` without a network: no downloads,
    random weights allowed (and chosen) for model services, one torch thread, the test stacks'
    quick settings. Writes the tagger's label files into ``models_dir``."""
    env = {
        "AMBIENCE_MODELS_DIR": str(models_dir),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        f"AMBIENCE_{name.upper()}_TORCH_THREADS": "1",
        **QUICK_SERVICE_ENV.get(name, {}),
        **RANDOM_MODELS.get(name, {}),
    }
    if name == "tagger":
        write_places_labels(models_dir / "tagger")
    return env


@contextlib.contextmanager
def offline_models(folder: Path) -> Iterator[Path]:
    """Services built in this process meanwhile read their weights from ``folder`` (nothing is
    downloaded; random weights allowed) and keep their ONNX exports in ``folder/onnx``, apart from
    the run's shared exports."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMBIENCE_MODELS_DIR", str(folder))
        mp.setenv("AMBIENCE_ONNX_DIR", str(folder / "onnx"))
        mp.setenv("AMBIENCE_DOWNLOAD_MODELS", "0")
        mp.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
        yield folder
