"""Images/s of the model services, one request at a time (batch 1) vs many concurrent requests
(the micro-batcher runs one forward pass for everything waiting), and text-query latency.

    python bench/model_throughput.py [--images 48] [--clients 16]

Runs the feature objects in-process (decode + preprocess + forward, as a request does) on synthetic
photos-sized JPEGs. Random weights: speed does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["AMBIENCE_ALLOW_RANDOM_WEIGHTS"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.common.embedding import EmbeddingFeature  # noqa: E402
from services.global_features.service import GlobalFeature, GlobalFeaturesSettings  # noqa: E402
from services.image_text.service import ImageTextFeature, ImageTextSettings  # noqa: E402
from tests.helpers import encode, synthetic_image  # noqa: E402


def throughput(
    feature: EmbeddingFeature, images: list[bytes], clients: int, rounds: int
) -> tuple[float, float, float]:
    """(images/s one at a time, images/s with ``clients`` concurrent callers, mean batch size).

    The two modes alternate for ``rounds`` rounds and the best round of each counts: the machine is
    shared, and alternating keeps slow phases of other processes from favouring one mode.
    """
    feature.extract(images[0])  # warm-up
    serial, concurrent = 0.0, 0.0
    before = feature.batcher.stats.as_dict()
    batched_items = batched_batches = 0
    for _ in range(rounds):
        started = time.perf_counter()
        for data in images:
            feature.extract(data)
        serial = max(serial, len(images) / (time.perf_counter() - started))
        before = feature.batcher.stats.as_dict()
        with ThreadPoolExecutor(clients) as pool:
            started = time.perf_counter()
            list(pool.map(feature.extract, images))
            concurrent = max(concurrent, len(images) / (time.perf_counter() - started))
        after = feature.batcher.stats.as_dict()
        batched_items += after["items"] - before["items"]
        batched_batches += after["batches"] - before["batches"]
    return serial, concurrent, batched_items / max(batched_batches, 1)


def forward_only(feature: EmbeddingFeature, images: list[bytes], batch: int) -> tuple[float, float]:
    """(images/s, images/s) of the forward pass alone at batch 1 and at ``batch`` (no decoding)."""
    pixels = [feature.session.preprocess(feature.decode_rgb(data)) for data in images]
    feature.session.embed_images(np.stack(pixels[:1]))  # warm-up
    started = time.perf_counter()
    for p in pixels:
        feature.session.embed_images(p[None])
    single = len(pixels) / (time.perf_counter() - started)
    started = time.perf_counter()
    for lo in range(0, len(pixels), batch):
        feature.session.embed_images(np.stack(pixels[lo : lo + batch]))
    return single, len(pixels) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the models whose label contains this")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    images = [encode(synthetic_image(i, (1024, 768)), quality=90) for i in range(args.images)]
    print(
        f"torch threads: {torch.get_num_threads()}, device: cpu, {args.images} images 1024x768, "
        f"{args.clients} concurrent clients for the batched path\n"
    )
    print(
        "| service / model | requests one at a time (img/s) | concurrent requests, batched (img/s) | gain "
        "| mean batch | forward only, batch 1 (img/s) | forward only, batch 16 (img/s) | gain |"
    )
    print("|---|---|---|---|---|---|---|---|")
    configs = [
        (
            "global_features / tf_efficientnet_lite0",
            GlobalFeature,
            GlobalFeaturesSettings(
                data_dir=tmp / "a", model="tf_efficientnet_lite0", weights="random", mirrored_query=False
            ),
        ),
        (
            "global_features / beit_base_patch16_224",
            GlobalFeature,
            GlobalFeaturesSettings(data_dir=tmp / "b", weights="random", mirrored_query=False),
        ),
        ("image_text / ViT-B-16", ImageTextFeature, ImageTextSettings(data_dir=tmp / "c", weights="random")),
    ]
    clip: ImageTextFeature | None = None
    for label, cls, settings in configs:
        is_clip = isinstance(settings, ImageTextSettings)  # loaded anyway for the text-query figures
        if args.only not in label and not is_clip:
            continue
        feature = cls(settings)  # type: ignore[abstract]
        feature.load()
        if args.only in label:
            serial, batched, mean_batch = throughput(feature, images, args.clients, args.rounds)
            single, sixteen = forward_only(feature, images, 16)
            print(
                f"| {label} | {serial:.1f} | {batched:.1f} | x{batched / serial:.2f} | {mean_batch:.1f} "
                f"| {single:.1f} | {sixteen:.1f} | x{sixteen / single:.2f} |",
                flush=True,
            )
        if isinstance(feature, ImageTextFeature):
            clip = feature
        else:
            feature.close()
    assert clip is not None
    texts = [
        f"a photo of {w} at the beach in summer" for w in ("a dog", "two cats", "a red car", "mountains")
    ]
    clip.embed_text(texts[0])
    latencies = []
    for i in range(40):
        started = time.perf_counter()
        clip.embed_text(texts[i % len(texts)] + f" {i}")
        latencies.append(1000 * (time.perf_counter() - started))
    latencies.sort()
    print(
        f"\nimage_text text-query embedding (ViT-B-16 text tower, one query at a time): median "
        f"{statistics.median(latencies):.1f} ms, p90 {latencies[int(0.9 * len(latencies))]:.1f} ms"
    )
    with ThreadPoolExecutor(args.clients) as pool:
        started = time.perf_counter()
        list(pool.map(clip.embed_text, [f"{texts[i % 4]} {i}" for i in range(160)]))
        rate = 160 / (time.perf_counter() - started)
    print(
        f"text queries with {args.clients} concurrent clients: {rate:.1f} queries/s "
        f"(vs {1000 / statistics.median(latencies):.1f} one at a time)"
    )
    clip.close()


if __name__ == "__main__":
    main()
