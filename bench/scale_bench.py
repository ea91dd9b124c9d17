"""Scale: latency and memory of each index kind as the collection grows, against an exhaustive
reference measured in the same run.

One harness (``bench/harness.py``), its parts in ``bench/scale/``, each a block of docs/benchmarks.md
(``bench.scale_bench.<part>``); collections are synthetic (``bench/vectors.py``), since the models
cannot embed a million photos here:

- ``services``: each one-vector-per-image service's own index at 10k / 100k / 1M rows like its real
  features: add rate, k=10 latency against brute force, agreement, bytes per item;
- ``thresholds``: the duplicate searches (phash within 64 bits at 1M, colour within a distance at
  100k) through the services' own search, against the numpy scan, with the same results checked;
- ``compressed``: global_features' flat index against compressed FAISS factories (IVF-SQ8, IVF-PQ)
  at 100k / 1M: memory, training, latency, recall@10;
- ``pgvector``: pgvector HNSW in an embedded PostgreSQL against FAISS flat and IVF at 100k / 1M.

local_features' two-stage index has its own bench (``bench/local_features_bench.py``); the store,
replica lag and Dask import past one machine are ``bench/scaleout_bench.py``.

    python -m bench.scale_bench [--small] [--parts services,thresholds,compressed,pgvector]
        [--sizes 10000,100000] [--repeats N] [--queries N] [--plots DIR] ...
"""

from __future__ import annotations

import argparse
import os
import sys

from bench import harness

PARTS = {
    "services": "Cost versus collection size",
    "thresholds": "Threshold search versus collection size",
    "compressed": "Search latency: flat vs compressed index",
    "pgvector": "pgvector HNSW vs FAISS",
}


def sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        type=sizes,
        help="comma list of collection sizes (services 10000,100000,1000000; thresholds phash 1000000 and "
        "colour 100000; compressed and pgvector 100000,1000000)",
    )
    p.add_argument("--repeats", type=int, help="queries timed per size (services 20, thresholds 50)")
    p.add_argument("--queries", type=int, help="compressed, pgvector: queries for recall@10 (200)")
    p.add_argument(
        "--max-gib", type=float, default=4.0, help="services: largest synthetic collection per size"
    )
    # compressed
    p.add_argument("--dim", type=int, default=768, help="compressed: vector dimensions")
    p.add_argument(
        "--factories",
        type=lambda s: s.split(";"),
        default=["IVF1024,SQ8", "IVF1024,PQ64np", "IVF1024,PQ64x4fs"],
        help="compressed: FAISS factory strings, separated by ';'",
    )
    p.add_argument(
        "--smallest-only",
        type=lambda s: [f for f in s.split(";") if f],
        default=["IVF1024,PQ64np"],
        help="compressed: factories built at the smallest size only (';'-separated; 8-bit PQ encodes "
        "slowly, and the run says what the larger sizes would take)",
    )
    p.add_argument("--nprobe", type=int, default=16, help="compressed: the service's default nprobe")
    p.add_argument("--train", type=int, default=40_000, help="compressed: training sample (39 per IVF list)")
    p.add_argument("--timed", type=int, default=100, help="compressed: most single queries timed per index")
    p.add_argument("--timed-seconds", type=float, default=5.0, help="compressed: stop timing after this")
    # pgvector
    p.add_argument(
        "--pgvector-max",
        type=int,
        default=1_000_000,
        help="pgvector: largest table built (larger: projected)",
    )
    p.add_argument(
        "--pgvector-ef-search", default="100", help="pgvector: comma list of hnsw.ef_search values"
    )
    p.add_argument(
        "--pgvector-build-memory-mb",
        type=int,
        default=4096,
        help="pgvector: cap on an HNSW build's maintenance_work_mem (each asks for what its table needs)",
    )
    p.add_argument(
        "--pgvector-build-workers",
        type=int,
        default=max(0, (os.cpu_count() or 1) - 1),
        help="pgvector: parallel workers of an HNSW build besides the leader (default: one per other core)",
    )


if __name__ == "__main__":
    sys.exit(harness.main("scale_bench", __doc__, PARTS, add_arguments))
