"""Model choices: per-image CPU time of the docs/models.md rows (random weights).

Each model is built by the service's own session class (global_features ``TimmSession``, image_text
``OpenClipSession``'s loading code) with random weights, and one image at a time is embedded at the
model's own input size, on ``--threads`` torch threads (default 1). The reference is
EfficientNet-Lite0, the model the other benches use, timed in the same run. ``--small``: the
reference and the smallest row only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from bench.harness import progress, small_note
from bench.model_speed.common import RANDOM, set_threads
from bench.timing import machine

#: (service, model, pooling or ""), the reference first
ROWS = [
    ("global_features", "tf_efficientnet_lite0", "model"),
    ("global_features", "vit_small_patch14_dinov2", "model"),
    ("global_features", "vit_small_patch14_dinov2", "token_avg"),
    ("global_features", "vit_base_patch14_dinov2", "model"),
    ("image_text", "MobileCLIP-S1", ""),
    ("image_text", "MobileCLIP2-S0", ""),
    ("image_text", "ViT-B-32-SigLIP2-256", ""),
    ("image_text", "ViT-B-16-SigLIP2", ""),
]
log = progress("model_speed choices")


def embedder(service: str, model: str, pooling: str) -> tuple[Callable[[], np.ndarray], str]:
    """A function embedding one image (the model's input size), and that size, as text."""
    import torch

    from services.common.models.open_clip_loader import load_open_clip_model

    if service == "global_features":
        from services.global_features.model import TimmSession

        session = TimmSession(model, RANDOM, torch.device("cpu"), pooling=pooling)
        _, height, width = session.input_size
        pixels = np.zeros((1, height, width, 3), np.uint8)
        return lambda: session.embed_images(pixels), f"{height}x{width}"
    # image_text: the image tower as OpenClipSession loads it (its tokenizer is not timed)
    net = load_open_clip_model(model, RANDOM)
    size = net.visual.preprocess_cfg["size"]
    side = size if isinstance(size, int) else size[0]
    batch = torch.zeros(1, 3, side, side)

    def embed() -> np.ndarray:
        with torch.inference_mode():
            return net.encode_image(batch, normalize=True).numpy()

    return embed, f"{side}x{side}"


def run(args: argparse.Namespace) -> str:
    threads = set_threads(args, 1)
    rows = ROWS[:2] if args.small else ROWS
    repeats = args.repeats or (2 if args.small else 5)
    results = []
    for service, model, pooling in rows:
        started = time.perf_counter()
        embed, size = embedder(service, model, pooling)
        load_s = time.perf_counter() - started
        dim = int(embed().shape[1])  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            embed()
            times.append(time.perf_counter() - t0)
        median = float(np.median(times))
        results.append((service, model, pooling, size, dim, load_s, median))
        log(f"{model} {pooling}: {median * 1000:.0f} ms per image")
    reference = results[0][-1]
    out = [
        small_note("the reference and the smallest row") if args.small else "",
        f"One image at a time, {threads} torch thread(s), random weights, median of {repeats} after a "
        f"warm-up; {machine()}. Ratio: against `{results[0][1]}` in the same run.\n",
        "| service | model | pooling | input | dims | build s | ms per image | vs reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for service, model, pooling, size, dim, load_s, median in results:
        out.append(
            f"| {service} | `{model}` | {pooling or '–'} | {size} | {dim} | {load_s:.1f} | "
            f"{median * 1000:.0f} | {median / reference:.1f}x |"
        )
    return "\n".join(out)
