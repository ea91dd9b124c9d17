"""Search latency of the global_features index at 100k and 1M synthetic vectors: exact flat index vs
compressed indexes (FAISS factory strings, as set by AMBIENCE_GLOBAL_FEATURES_INDEX_FACTORY), with the
recall@10 of the compressed ones against the exact result.

    python bench/vector_search.py [--sizes 100000 1000000] [--dim 768]

Vectors: unit vectors around 20k random centres (clustered like real embeddings, unlike uniform
noise). Queries: fresh vectors from the same distribution, one at a time (as a request does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.index import VectorIndex, new_flat_index  # noqa: E402
from services.global_features.service import make_compressed_index  # noqa: E402


def clustered(
    n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, spread: float = 0.6
) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        x = centres[rng.integers(0, len(centres), hi - lo)] + (spread / np.sqrt(dim)) * rng.standard_normal(
            (hi - lo, dim), dtype=np.float32
        )
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


SEARCH_THREADS = 1
BUILD_THREADS = 2


def latency_ms(index: VectorIndex, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    faiss.omp_set_num_threads(SEARCH_THREADS)
    ids = []
    times = []
    for q in queries:
        started = time.perf_counter()
        _, found = index.search(q[None], k)
        times.append(1000 * (time.perf_counter() - started))
        ids.append(found[0])
    faiss.omp_set_num_threads(BUILD_THREADS)
    return statistics.median(times), np.stack(ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--factories", nargs="+", default=["IVF1024,SQ8", "IVF1024,PQ64"])
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads (the services' SEARCH_THREADS)")
    args = parser.parse_args()
    global SEARCH_THREADS
    SEARCH_THREADS = args.threads
    faiss.omp_set_num_threads(BUILD_THREADS)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20_000, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    centres *= 1.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    print(
        f"FAISS {faiss.__version__}, {SEARCH_THREADS} search thread(s), dim {args.dim}, "
        f"k=10, {args.queries} single queries, nprobe {args.nprobe}\n"
    )
    print("| vectors | index | memory | build (s) | median latency (ms) | speed-up vs flat | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        data = clustered(n, args.dim, centres, rng)
        queries = clustered(args.queries, args.dim, centres, rng)
        ids = np.arange(n, dtype=np.int64)
        started = time.perf_counter()
        flat = VectorIndex(lambda: new_flat_index(args.dim, "l2"))
        flat.add(ids, data)
        build = time.perf_counter() - started
        flat_ms, truth = latency_ms(flat, queries)
        mem = len(flat.serialize()) / 2**20
        print(f"| {n:,} | flat | {mem:.0f} MiB | {build:.1f} | {flat_ms:.2f} | x1 | 1.000 |", flush=True)
        del flat
        for factory in args.factories:
            started = time.perf_counter()
            template = make_compressed_index(args.dim, factory)
            template.train(data[rng.choice(n, min(n, 40_000), replace=False)])
            ivf = faiss.try_extract_index_ivf(template)
            if ivf is not None:
                ivf.nprobe = args.nprobe
            index = VectorIndex(lambda t=template: faiss.clone_index(t))
            index.add(ids, data)
            build = time.perf_counter() - started
            ms, found = latency_ms(index, queries)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
            mem = len(index.serialize()) / 2**20
            print(
                f"| {n:,} | {factory} | {mem:.0f} MiB | {build:.1f} | {ms:.2f} | x{flat_ms / ms:.1f} | "
                f"{recall:.3f} |",
                flush=True,
            )
            del index, template
        del data


if __name__ == "__main__":
    main()
