"""Copy recall: does a transformed copy of a photo find its source, per service and fused?

One harness (``bench/harness.py``), its parts in ``bench/copy_recall/``, each a block of
docs/benchmarks.md (``bench.copy_recall_bench.<part>``); every part counts a hit by the same rule
(``bench/copy_recall/ranks.py``: the source, or a byte-identical copy of its file):

- ``gateway``: recall@1 / @10 of every search service and of the fused ``unified_res`` through a
  running stack, on the copy-detection set (13 transforms), against imagehash and PDQ in this
  process; then the fusion grid on the same lists (block ``bench.copy_recall_bench.fusion``);
- ``local_features``: rank-1 recall of local_features in-process on its own set (crops, rotation,
  mirrored crop), with the photos it misses;
- ``global_features``: rank-1 rate and mean rank of the source with the real EfficientNet-Lite0
  weights, raw vectors against alpha query expansion and PCA whitening variants.

Photos: ``AMBIENCE_TEST_PHOTOS`` (default ``../shared/photos``).

    python -m bench.copy_recall_bench [--small] [--parts gateway,local_features,global_features]
        [--max-photos N] [--transforms a,b] [--gateway URL] [--every N] [--plots DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

from bench import harness

PARTS = {
    "gateway": "Retrieval evaluation: copy detection",
    "local_features": "local_features: rank-1 recall per copy transform",
    "global_features": "global_features with real weights: does an edited copy find its source?",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-photos", type=int, help="photos used (default all; --small: 8, 4, 6)")
    p.add_argument("--transforms", help="comma list of the part's transforms (default: all of its set)")
    p.add_argument("--gateway", help="gateway: URL of a running gateway (default: start the stack here)")
    p.add_argument("--api-key", default=os.environ.get("AMBIENCE_API_KEY"), help="gateway: for --gateway")
    p.add_argument("--every", type=int, help="local_features: query every n-th photo (default 1)")
    p.add_argument(
        "--descriptor", default="rootsift", choices=["rootsift", "hardnet8"], help="local_features"
    )


if __name__ == "__main__":
    sys.exit(harness.main("copy_recall_bench", __doc__, PARTS, add_arguments))
