"""Model speed: images/s and ms per image of each model service's runtime choices, batch sizes,
threads and memory.

One harness (``bench/harness.py``), its parts in ``bench/model_speed/``, each a block of
docs/benchmarks.md (``bench.model_speed_bench.<part>``):

- ``throughput``: global_features and image_text in-process, one request at a time vs concurrent
  requests (the micro-batcher), the forward pass at batch 1 vs 16, image_text text-query latency;
- ``choices``: ms per image of each docs/models.md row, one torch thread, against EfficientNet-Lite0;
- ``over_http``: captioner and tagger as processes, seconds per caption / tag set over HTTP against the
  model alone, start-up and peak RSS;
- ``runtimes``: the captioner's key/value cache on and off, and each image tower under each runtime of
  ``services/common/models/inference.py`` (eager, channels_last, onnx, int8);
- ``services``: every service of the offline stack in a fresh process: wall and CPU ms per image, RSS
  after start-up, one image and all;
- ``serving``: global_features' and image_text's image models under runtime ``onnx`` (the exported
  file, no torch in the serving process) against eager, and how alike their vectors are.

Random weights throughout (speed does not depend on the values); every ratio is against a reference
measured in the same run.

    python -m bench.model_speed_bench [--small]
        [--parts throughput,choices,over_http,runtimes,services,serving]
        [--images N] [--rounds N] [--threads N] [--device cpu] ...
"""

from __future__ import annotations

import argparse
import sys

from bench import harness

PARTS = {
    "throughput": "Images/s: one request at a time vs concurrent requests (micro-batching)",
    "choices": "Model choices: CPU time per image",
    "over_http": "captioner and tagger over HTTP",
    "runtimes": "CPU inference: runtimes and the captioner's key/value cache",
    "services": "Each service's own cost per image and memory",
    "serving": "Runtime onnx against eager, as the services serve their image models",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Options several parts read; each part has its own default when one is not given.
    p.add_argument(
        "--images",
        type=int,
        help="images per model or service (throughput 16 synthetic JPEGs, over_http 3 photos, services 200)",
    )
    p.add_argument(
        "--rounds", type=int, help="alternating rounds (throughput 3, best counts; runtimes 3, medians)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads (default 1; throughput: torch's default; 0 = torch's default)",
    )
    p.add_argument("--device", help="'cpu', 'cuda' or 'auto' (throughput auto, over_http cpu)")
    p.add_argument("--beam-width", type=int, help="captioner beams (default: the service's)")
    p.add_argument(
        "--skip-captioner", action="store_true", help="over_http, runtimes: leave the captioner out"
    )
    # throughput
    p.add_argument(
        "--clients", type=int, default=16, help="throughput: concurrent callers on the batched path"
    )
    p.add_argument("--only", default="", help="throughput: only the models whose label contains this")
    # choices
    p.add_argument("--repeats", type=int, help="choices: timed images per model (default 5)")
    # over_http
    p.add_argument("--max-length", type=int, help="over_http: caption tokens (default 30, the service's)")
    p.add_argument(
        "--caption-references", type=int, help="over_http: captions timed for the model-only reference (2)"
    )
    # runtimes
    p.add_argument("--lengths", default="10,20,30", help="runtimes: caption lengths in tokens")
    p.add_argument(
        "--step-repeats", type=int, default=3, help="runtimes: one-step timings per round and length"
    )
    p.add_argument(
        "--tower-rounds", type=int, default=2, help="runtimes: image-tower rounds; the best counts"
    )
    p.add_argument(
        "--runtimes",
        default="channels_last,onnx,int8",
        help="runtimes: measured besides eager and the defaults",
    )
    p.add_argument("--captions-only", action="store_true", help="runtimes: the captioner alone")
    # services
    from bench.model_speed.services import STACK

    p.add_argument("--services", default=",".join(STACK), help="services: the services measured")


if __name__ == "__main__":
    sys.exit(harness.main("model_speed_bench", __doc__, PARTS, add_arguments))
