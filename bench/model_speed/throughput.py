"""global_features and image_text throughput: images/s one request at a time vs concurrent requests
(the micro-batcher runs one forward pass for everything waiting), the forward pass alone at batch 1
vs a full batch, and image_text text-query latency.

Runs the feature objects in-process (each call = decode + preprocess + forward, as a request does)
on synthetic photo-sized JPEGs. Random weights: speed does not depend on the weight values. The
reference for the concurrent path is the same feature called one request at a time in the same
run; the reference for a batched forward pass is the forward pass at batch 1. ``--small``: the tiny
test models, 8 small images, one round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ambience_support.images import encode, synthetic_image
from bench.harness import load_average, progress, small_note
from bench.model_speed.common import TINY_CLIP, best_seconds, set_threads

TEXTS = [f"a photo of {w} at the beach in summer" for w in ("a dog", "two cats", "a red car", "mountains")]
log = progress("model_speed throughput")


@dataclass
class ModelRow:
    label: str
    device: str
    serial: float  # images/s, one request at a time
    concurrent: float  # images/s, ``clients`` concurrent requests (micro-batched)
    mean_batch: float  # images per forward pass on the concurrent path
    forward_1: float  # images/s, forward pass alone, batch 1
    forward_n: float  # images/s, forward pass alone, batch ``batch``


@dataclass
class TextRow:
    model: str
    queries: int
    median_ms: float
    p90_ms: float
    concurrent_queries: int
    concurrent_per_s: float
    mean_batch: float


def measure(feature: Any, images: list[bytes], clients: int, rounds: int, batch: int) -> ModelRow:
    """The four rates of one model, and the mean batch on the concurrent path.

    Requests one at a time, ``clients`` concurrent requests, the forward pass alone at batch 1 and at
    ``batch`` (on preprocessed pixels, no decoding) alternate for ``rounds`` rounds and the best
    round of each counts (:func:`best_seconds`).
    """
    pixels = [feature.session.preprocess(feature.decode_rgb(data)) for data in images]
    feature.extract(images[0])  # warm-up: the request path and both forward shapes
    feature.session.embed_images(pixels[0][None])
    feature.session.embed_images(np.stack(pixels[:batch]))
    batched = {"items": 0, "batches": 0}  # what the micro-batcher ran on the concurrent path

    def concurrent() -> None:
        before = feature.batcher.stats.as_dict()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(feature.extract, images))
        after = feature.batcher.stats.as_dict()
        for key in batched:
            batched[key] += after[key] - before[key]

    best = best_seconds(
        {
            "serial": lambda: [feature.extract(data) for data in images],
            "concurrent": concurrent,
            "single": lambda: [feature.session.embed_images(p[None]) for p in pixels],
            "batched": lambda: [
                feature.session.embed_images(np.stack(pixels[lo : lo + batch]))
                for lo in range(0, len(pixels), batch)
            ],
        },
        rounds,
    )
    n = len(images)
    return ModelRow(
        "",
        str(feature.session.device),
        n / best["serial"],
        n / best["concurrent"],
        batched["items"] / max(batched["batches"], 1),
        n / best["single"],
        n / best["batched"],
    )


def text_latency(clip: Any, model: str, queries: int, concurrent: int, clients: int) -> TextRow:
    """Text-query embedding (tokenize + text tower, through the text micro-batcher)."""
    clip.embed_text(TEXTS[0])  # warm-up
    latencies = []
    for i in range(queries):
        started = time.perf_counter()
        clip.embed_text(f"{TEXTS[i % len(TEXTS)]} {i}")
        latencies.append(1000 * (time.perf_counter() - started))
    latencies.sort()
    before = clip.text_batcher.stats.as_dict()
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        list(pool.map(clip.embed_text, [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(concurrent)]))
        rate = concurrent / (time.perf_counter() - started)
    after = clip.text_batcher.stats.as_dict()
    return TextRow(
        model=model,
        queries=queries,
        median_ms=statistics.median(latencies),
        p90_ms=latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))],
        concurrent_queries=concurrent,
        concurrent_per_s=rate,
        mean_batch=(after["items"] - before["items"]) / max(after["batches"] - before["batches"], 1),
    )


@dataclass(frozen=True)
class ModelConfig:
    label: str
    #: The model name shown in the text-query row.
    model: str
    service: str
    #: Settings beyond random weights and the device.
    settings: dict[str, Any]


def model_configs(small: bool) -> list[ModelConfig]:
    """The measured models; image_text comes last (text queries too)."""
    single_view = {"mirrored_query": False}
    if small:
        return [
            ModelConfig(
                "global_features / test_vit (tiny)",
                "test_vit",
                "global_features",
                {"model": "test_vit", **single_view},
            ),
            ModelConfig(
                "image_text / tiny-clip",
                "tiny-clip",
                "image_text",
                {"model": "tiny-clip", "model_config_path": str(TINY_CLIP)},
            ),
        ]
    return [
        ModelConfig(
            "global_features / tf_efficientnet_lite0",
            "tf_efficientnet_lite0",
            "global_features",
            {"model": "tf_efficientnet_lite0", **single_view},
        ),
        ModelConfig(
            "global_features / beit_base_patch16_224 (the default)",
            "beit_base_patch16_224",
            "global_features",
            single_view,
        ),
        ModelConfig(
            "image_text / ViT-B-16 (the former default)", "ViT-B-16", "image_text", {"model": "ViT-B-16"}
        ),
    ]


def spread(values: list[float]) -> str:
    """'x1.8' for one value, 'x1.8 to x2.3' for several."""
    lo, hi = min(values), max(values)
    return f"x{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"x{lo:.2f} to x{hi:.2f}"


def markdown(
    small: bool,
    images: int,
    clients: int,
    rounds: int,
    size: tuple[int, int],
    batch: int,
    rows: list[ModelRow],
    text: TextRow | None,
    threads: int,
    load: float,
) -> str:
    out: list[str] = []
    if small:
        out.append(
            small_note(
                "tiny random test models (timm `test_vit`, open_clip `tiny-clip`) on a few small images"
            )
        )
    devices = sorted({r.device for r in rows}) or ["cpu"]
    out += [
        f"{images} synthetic {size[0]}x{size[1]} JPEGs (quality 90), random weights (speed does not "
        f"depend on the values), device {', '.join(devices)}, torch threads {threads}, {os.cpu_count()} "
        f"CPUs (load average {load:.1f} at the start). The feature objects run in-process; each call is "
        "decode + preprocess + forward, as a request is. The concurrent path has "
        f"{clients} callers at once, so the micro-batcher runs one forward pass for every request "
        f"waiting; the two modes alternate for {rounds} {'round' if rounds == 1 else 'rounds'} and "
        "the best round of each counts. "
        f'"forward only" times the model alone on preprocessed pixels, batch 1 vs batch {batch}.',
        "",
    ]
    if rows:
        out += [
            "### Images/s: one request at a time vs concurrent requests (micro-batching)",
            "",
            "| service / model | requests one at a time (img/s) | concurrent requests, batched (img/s) "
            f"| gain | mean batch | forward only, batch 1 (img/s) | forward only, batch {batch} (img/s) "
            "| gain |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            out.append(
                f"| {r.label} | {r.serial:.1f} | {r.concurrent:.1f} | x{r.concurrent / r.serial:.2f} "
                f"| {r.mean_batch:.1f} | {r.forward_1:.1f} | {r.forward_n:.1f} "
                f"| x{r.forward_n / r.forward_1:.2f} |"
            )
        request_gain = [r.concurrent / r.serial for r in rows]
        forward_gain = [r.forward_n / r.forward_1 for r in rows]
        share = [100 * r.serial / r.forward_1 for r in rows]
        if max(forward_gain) < 1.2:
            forward_verdict = "batching the forward pass itself gains little or nothing here"
        elif min(forward_gain) >= 1.2:
            forward_verdict = "batching the forward pass itself pays for every model measured here"
        else:
            forward_verdict = "batching the forward pass itself pays for some of the models only"
        overhead = (
            " (the difference is decoding, preprocessing and the hand-off to the model thread)"
            if max(share) < 100
            else ""
        )
        out += [
            "",
            f"In this run concurrent requests give {spread(request_gain)} the images/s of one request at a "
            f"time; the forward pass alone at batch {batch} gives {spread(forward_gain)} the images/s of "
            f"batch 1, so {forward_verdict}. One request at a time runs at {min(share):.0f}% to "
            f"{max(share):.0f}% of the forward-only batch-1 rate{overhead}.",
            "",
        ]
    if text is not None:
        one_rate = 1000 / text.median_ms
        out += [
            "### image_text text-query latency",
            "",
            f"Text-query embedding ({text.model} text tower: tokenize + forward through the text "
            f"micro-batcher, no index search): {text.queries} queries one at a time, then "
            f"{text.concurrent_queries} queries from {clients} concurrent callers.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| text embedding, one query at a time | median {text.median_ms:.1f} ms, "
            f"p90 {text.p90_ms:.1f} ms ({one_rate:.1f} queries/s) |",
            f"| {clients} concurrent text queries (micro-batched, mean batch {text.mean_batch:.1f}) "
            f"| {text.concurrent_per_s:.1f} queries/s (x{text.concurrent_per_s / one_rate:.2f}) |",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def run(args: argparse.Namespace) -> str:
    os.environ["AMBIENCE_ALLOW_RANDOM_WEIGHTS"] = "1"
    from services.common.models.embedding import EmbeddingFeature
    from services.image_text.service import ImageTextFeature
    from services.registry import new_feature

    images_n = args.images or (8 if args.small else 16)
    width, height = (320, 240) if args.small else (1024, 768)
    rounds = args.rounds or (1 if args.small else 3)
    text_queries, concurrent_text = (8, 16) if args.small else (24, 64)
    if images_n < 2:
        raise SystemExit("need at least 2 images")
    batch = min(16, images_n)
    load = load_average()
    threads = set_threads(args, 0)
    images = [encode(synthetic_image(i, (width, height)), quality=90) for i in range(images_n)]
    rows: list[ModelRow] = []
    text: TextRow | None = None
    with tempfile.TemporaryDirectory() as tmp_name:
        for n, config in enumerate(model_configs(args.small)):
            is_clip = config.service == "image_text"  # loaded anyway for the text queries
            if args.only not in config.label and not is_clip:
                continue
            log(f"loading {config.label}")
            feature = new_feature(
                config.service,
                Path(tmp_name) / str(n),
                weights="random",
                device=args.device or "auto",
                **config.settings,
            )
            assert isinstance(feature, EmbeddingFeature)
            feature.load()
            try:
                if args.only in config.label:
                    row = measure(feature, images, args.clients, rounds, batch)
                    row.label = config.label
                    log(f"{row}")
                    rows.append(row)
                if isinstance(feature, ImageTextFeature):
                    text = text_latency(feature, config.model, text_queries, concurrent_text, args.clients)
                    log(f"{text}")
            finally:
                feature.close()
    return markdown(
        args.small, images_n, args.clients, rounds, (width, height), batch, rows, text, threads, load
    )
