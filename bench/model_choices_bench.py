"""Model choices: per-image CPU time of the docs/models.md rows (random weights).

Each model is built by the service's own session class (global_features ``TimmSession``, image_text
``OpenClipSession``'s loading code) with random weights (compute does not depend on the values), and
one image at a time is embedded at the model's own input size, on ``--threads`` torch threads. The
reference is EfficientNet-Lite0, the model the other benches use, timed in the same run.

    python -m bench.model_choices_bench [--small] [--repeats N] [--threads N]

Prints markdown on stdout (``--small``: the reference and the smallest row only).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

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


def log(message: str) -> None:
    print(f"[model_choices_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def embedder(service: str, model: str, pooling: str) -> tuple[Callable[[], np.ndarray], str]:
    """A function embedding one image (the model's input size), and that size, as text."""
    from services.common.models.open_clip_loader import load_open_clip_model
    from services.common.models.weights import ResolvedWeights

    weights = ResolvedWeights("random", None, "random-seed0", "random")
    if service == "global_features":
        from services.global_features.model import TimmSession

        session = TimmSession(model, weights, torch.device("cpu"), pooling=pooling)
        _, height, width = session.input_size
        pixels = np.zeros((1, height, width, 3), np.uint8)
        return lambda: session.embed_images(pixels), f"{height}x{width}"
    # image_text: the image tower as OpenClipSession loads it (its tokenizer is not timed)
    net = load_open_clip_model(model, weights)
    size = net.visual.preprocess_cfg["size"]
    side = size if isinstance(size, int) else size[0]
    batch = torch.zeros(1, 3, side, side)

    def run() -> np.ndarray:
        with torch.inference_mode():
            return net.encode_image(batch, normalize=True).numpy()

    return run, f"{side}x{side}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="reference and smallest row only")
    parser.add_argument("--repeats", type=int, default=5, help="timed images per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = ROWS[:2] if args.small else ROWS
    repeats = 2 if args.small else args.repeats
    results = []
    for service, model, pooling in rows:
        started = time.perf_counter()
        run, size = embedder(service, model, pooling)
        load_s = time.perf_counter() - started
        dim = int(run().shape[1])  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        median = float(np.median(times))
        results.append((service, model, pooling, size, dim, load_s, median))
        log(f"{model} {pooling}: {median * 1000:.0f} ms per image")
    reference = results[0][-1]
    print(
        f"One image at a time, {args.threads} torch thread(s), random weights, median of {repeats} after a "
        f"warm-up; {machine()}. Ratio: against `{results[0][1]}` in the same run.\n"
    )
    print("| service | model | pooling | input | dims | build s | ms per image | vs reference |")
    print("|---|---|---|---|---|---|---|---|")
    for service, model, pooling, size, dim, load_s, median in results:
        print(
            f"| {service} | `{model}` | {pooling or '–'} | {size} | {dim} | {load_s:.1f} | "
            f"{median * 1000:.0f} | {median / reference:.1f}x |"
        )


if __name__ == "__main__":
    main()
