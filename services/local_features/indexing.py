"""FAISS index layouts for local descriptors: exact until trained, then OPQ + IVF + PQ.

The trained *empty* index is the model of the layout: it is saved to disk once trained, and every
rebuild from the store clones it and adds the stored descriptors, so a restart never retrains.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

import faiss
import numpy as np

from services.local_features.extraction import DIM

log = logging.getLogger(__name__)

#: Below this many descriptors a trained index is pointless (and PQ's k-means cannot train).
MIN_TRAIN_VECTORS = 2000
#: FAISS wants >= 39 training points per centroid (IVF lists and PQ's 256 codes).
POINTS_PER_CENTROID = 39


def auto_factory(n_vectors: int) -> str:
    """A sensible OPQ/IVF/PQ factory string for ``n_vectors`` descriptors.

    nlist ~ 4 sqrt(n) (a power of two, with enough training points per list); 32 PQ bytes per
    descriptor after an OPQ rotation: 16x smaller than float32 rows, and votes only need the
    neighbours to be roughly right because candidates are verified on the stored descriptors.
    ``np``: no polysemous training (minutes of CPU for codes we never compare by Hamming)."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(max(n_vectors, 1)), 16)))
    nlist = max(16, min(nlist, 65536, 2 ** int(math.log2(max(n_vectors // POINTS_PER_CENTROID, 16)))))
    return f"OPQ32_128,IVF{nlist},PQ32np"


def nlist_of(index: faiss.Index) -> int | None:
    ivf = faiss.try_extract_index_ivf(index)
    return None if ivf is None else int(ivf.nlist)


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = max(1, min(nprobe, ivf.nlist))


def sample_vectors(batches: Iterable[np.ndarray], total: int, max_vectors: int, seed: int = 0) -> np.ndarray:
    """Up to ``max_vectors`` rows drawn uniformly from ``total`` rows arriving in batches."""
    rng = np.random.default_rng(seed)
    keep_fraction = min(1.0, max_vectors / max(total, 1))
    parts = []
    for batch in batches:
        if keep_fraction >= 1.0:
            parts.append(batch)
        else:
            parts.append(batch[rng.random(len(batch)) < keep_fraction])
    if not parts:
        return np.zeros((0, DIM), np.float32)
    sample = np.concatenate(parts).astype(np.float32)
    return sample[:max_vectors]


def train_index(
    factory: str,
    vectors: np.ndarray,
    kmeans_iterations: int = 20,
    opq_iterations: int = 10,
    progress: Callable[[str], None] = lambda _: None,
) -> faiss.Index:
    """A trained, empty index built from ``factory`` (L2 metric) on ``vectors``."""
    if len(vectors) < MIN_TRAIN_VECTORS:
        raise ValueError(f"{len(vectors)} descriptors stored; training needs at least {MIN_TRAIN_VECTORS}")
    index = faiss.index_factory(DIM, factory, faiss.METRIC_L2)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = opq_iterations  # FAISS default 50; recall barely moves past ~10
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.niter = kmeans_iterations
        if ivf.nlist * POINTS_PER_CENTROID > len(vectors):
            raise ValueError(
                f"factory {factory!r} has {ivf.nlist} lists; {len(vectors)} descriptors are too few "
                f"(need {ivf.nlist * POINTS_PER_CENTROID}); use fewer lists or leave the factory to auto"
            )
    started = time.monotonic()
    progress(f"training {factory} on {len(vectors)} descriptors")
    log.info("training %s on %d descriptors", factory, len(vectors))
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    log.info("trained %s in %.1fs", factory, time.monotonic() - started)
    return index


def serialize(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
