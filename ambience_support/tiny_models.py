"""The tiny model configurations tests run with random weights (the hubs are out of reach, and a test
must not wait on a real model), shared by the service tests, the hostile battery, the replica and
import tests and the benches. The configuration files themselves are data under tests/.
"""

from __future__ import annotations

from pathlib import Path

from ambience_support.photos import REPO

TINY_CLIP = REPO / "tests" / "models" / "tiny-clip.json"
TINY_COCA = REPO / "tests" / "captioner" / "tiny-coca.json"

#: global_features settings: a tiny ViT with random weights.
TINY_GLOBAL_FEATURES = {"model": "test_vit", "weights": "random", "mirrored_query": True}
#: image_text settings: a tiny CLIP with random weights.
TINY_IMAGE_TEXT = {"model": "tiny-clip", "weights": "random", "model_config_path": str(TINY_CLIP)}

#: Tests keep captions short (the uncached comparison re-runs the decoder on the whole prefix).
CAPTION_MAX_LENGTH = 10


def captioner_env(models: Path) -> dict[str, str]:
    """The captioner's environment: the tiny CoCa with random weights, one torch thread."""
    return {
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_CAPTIONER_MODEL": "tiny-coca",
        "AMBIENCE_CAPTIONER_MODEL_CONFIG_PATH": str(TINY_COCA),
        "AMBIENCE_CAPTIONER_WEIGHTS": "random",
        "AMBIENCE_CAPTIONER_MAX_LENGTH": str(CAPTION_MAX_LENGTH),
        "AMBIENCE_CAPTIONER_TORCH_THREADS": "1",
    }


# A few real Places365 category names, the rest filler in the same "/x/name[/sub] index" format.
REAL_PLACES = [
    "/a/airfield",
    "/b/bedroom",
    "/f/field/wild",
    "/s/shopfront",
    "/s/swimming_pool/indoor",
    "/b/bus_interior",
]


def category_names() -> list[str]:
    names = list(REAL_PLACES)
    i = 0
    while len(names) < 365:
        letter = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        names.append(f"/{letter}/scene_{i:03d}" + ("/outdoor" if i % 7 == 0 else ""))
        i += 1
    return names


def write_label_files(folder: Path, names: list[str] | None = None) -> tuple[Path, Path]:
    """categories_places365.txt ("/a/airfield 0") and IO_places365.txt ("/a/airfield 2") as CSAIL
    publishes them: 1 = indoor, 2 = outdoor."""
    names = names or category_names()
    folder.mkdir(parents=True, exist_ok=True)
    categories, io = folder / "categories_places365.txt", folder / "IO_places365.txt"
    categories.write_text("".join(f"{name} {i}\n" for i, name in enumerate(names)))
    io.write_text("".join(f"{name} {1 + (i % 2)}\n" for i, name in enumerate(names)))
    return categories, io


def tagger_env(models: Path) -> dict[str, str]:
    """The tagger's environment: random weights (the label files: :func:`write_label_files` into
    ``models / "tagger"``), one torch thread, a threshold that lets random probabilities through."""
    return {
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_TAGGER_WEIGHTS": "random",
        "AMBIENCE_TAGGER_THRESHOLD": "0",  # random weights spread probability thin: let some pass
        "AMBIENCE_TAGGER_MAX_TAGS": "5",
        "AMBIENCE_TAGGER_TORCH_THREADS": "1",
    }
