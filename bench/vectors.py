"""Vectors for the benches that measure searches: synthetic collections, the exhaustive reference
and how much of it an index returns.

- :func:`synthetic`: rows like a service's real features (its dtype, per-dimension statistics, norm
  or sum), for collections larger than the models can embed here;
- :func:`clustered`: unit vectors around random centres, like embeddings (uniform noise has no
  neighbourhoods, and every approximate index looks bad on it);
- :func:`brute_force` / :func:`distances`: the exhaustive scan every index is compared with;
- :func:`recall_at`: the share of the exact top-k an index returns.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

CHUNK = 50_000
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def synthetic(real: np.ndarray, rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """A generator of rows like ``real``: random bits for binary codes; per-dimension Gaussian with
    the real mean/std for floats, non-negative and re-normalised when the real rows are."""
    if real.dtype == np.uint8:
        return lambda n: rng.integers(0, 256, size=(n, real.shape[1]), dtype=np.uint8)
    mean, std = real.mean(0), real.std(0) + 1e-6
    nonneg = bool((real >= 0).all())
    norms = np.linalg.norm(real, axis=1)
    unit = bool(np.allclose(norms, 1, atol=1e-3))
    total = real.sum(1).mean()
    sums_const = bool(np.allclose(real.sum(1), total, rtol=1e-3))

    def rows(n: int) -> np.ndarray:
        x = (rng.standard_normal((n, real.shape[1]), dtype=np.float32) * std + mean).astype(np.float32)
        if nonneg:
            np.maximum(x, 0, out=x)
        if unit:
            x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        elif sums_const and nonneg:
            x *= total / (x.sum(1, keepdims=True) + 1e-12)
        return x

    return rows


def clustered(n: int, dim: int, centres: np.ndarray, seed: int, spread: float) -> np.ndarray:
    """n unit vectors, each a random centre plus Gaussian noise of norm ~``spread``; generated in
    chunks on two threads (numpy releases the GIL), each chunk from its own seeded generator."""
    out = np.empty((n, dim), np.float32)

    def fill(lo: int) -> None:
        rng = np.random.default_rng([seed, lo])
        hi = min(n, lo + CHUNK)
        block = out[lo:hi]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        block *= spread / np.sqrt(dim)
        block += centres[rng.integers(0, len(centres), hi - lo)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(fill, range(0, n, CHUNK)))
    return out


def unit_centres(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((count, dim), dtype=np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def distances(rows: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(queries, rows) distances as FAISS gives them (squared for L2; negated inner product)."""
    if metric == "hamming":
        return POPCOUNT[np.bitwise_xor(rows[None], queries[:, None])].sum(2)
    if metric == "l1":
        return np.stack([np.abs(rows - q).sum(1) for q in queries])
    if metric == "ip":
        return -(queries @ rows.T)
    return (rows * rows).sum(1)[None] - 2 * (queries @ rows.T) + (queries * queries).sum(1)[:, None]


def best_distances(rows: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Each row's best distance over the query rows (a query and its mirror, say), chunked to bound
    memory."""
    best = np.full(len(rows), np.inf, dtype=np.float64)
    for lo in range(0, len(rows), CHUNK):
        best[lo : lo + CHUNK] = distances(rows[lo : lo + CHUNK], queries, metric).min(0)
    return best


def brute_force(rows: np.ndarray, queries: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, float]:
    """Exhaustive top-k ids (best distance over the query rows) and the k-th best distance."""
    best = best_distances(rows, queries, metric)
    top = np.argpartition(best, k)[:k]
    return top, float(best[top].max())


def metric_of(index: Any) -> str:
    """A FAISS index's metric by the names :func:`distances` takes."""
    import faiss

    from services.common.features.index import is_binary

    if is_binary(index):
        return "hamming"
    kind = faiss.downcast_index(index).metric_type
    return {faiss.METRIC_L1: "l1", faiss.METRIC_INNER_PRODUCT: "ip"}.get(kind, "l2")


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each exact top-k (rows of ``truth``) found in the same row of ``found``."""
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
