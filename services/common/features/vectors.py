"""Vector arithmetic shared by the feature services (plain numpy, no FAISS, no HTTP)."""

from __future__ import annotations

import numpy as np


def stored_rows(records: list[bytes], dtype: type[np.generic], width: int) -> np.ndarray:
    """Fixed-width stored records -> rows (n, width) of ``dtype``; a short record raises."""
    if not records:
        return np.zeros((0, width), dtype)
    return np.stack([np.frombuffer(record, dtype, count=width) for record in records])


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def alpha_query_expansion(
    queries: np.ndarray, neighbours: np.ndarray, valid: np.ndarray, alpha: float
) -> np.ndarray:
    """alpha query expansion (Radenović et al., 2018), all queries at once.

    ``queries`` (m, d) and ``neighbours`` (m, n, d) are L2-normalised; ``valid`` (m, n) masks padding.
    New query = normalise(q + sum_i max(0, <q, x_i>) ** alpha * x_i): close neighbours pull the query
    towards themselves, far ones barely count (alpha = 0 is plain average query expansion).
    """
    sims = np.einsum("md,mnd->mn", queries, neighbours)
    weights = np.where(valid, np.clip(sims, 0.0, None) ** alpha, 0.0).astype(np.float32)
    return l2_normalize(queries + np.einsum("mn,mnd->md", weights, neighbours))


#: Float32 steps of slack in an inclusive distance threshold (:func:`within_threshold`).
THRESHOLD_ULPS = 8


def within_threshold(threshold: float) -> float:
    """The bound a distance is compared with for ``distance <= threshold``: the threshold plus a few
    float32 steps. Thresholds are inclusive, and the same pair of vectors gets distances a few last
    bits apart from two arithmetics (FAISS in float32, pgvector in float64): a hit at exactly the
    threshold must not fall out for that."""
    bound = min(float(threshold), float(np.finfo(np.float32).max))
    step = float(np.spacing(np.float32(max(abs(bound), np.finfo(np.float32).tiny))))
    return min(bound + THRESHOLD_ULPS * step, float(np.finfo(np.float32).max))
