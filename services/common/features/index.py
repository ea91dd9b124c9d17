"""FAISS behind a small interface: add, remove, search, range search, reconstruct, count.

Searches run concurrently (FAISS releases the GIL and its const search methods are thread-safe);
writes and index swaps take the exclusive side of a readers-writer lock. The wrapper knows
nothing about images: ids are FAISS int64 ids, vectors are rows of a numpy array (uint8 rows of
packed bits for binary indexes).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from services.common.features.locks import RWLock

AnyIndex = Any  # faiss.Index | faiss.IndexBinary; SWIG types are not useful for typing


@dataclass
class RangeResult:
    distances: np.ndarray
    ids: np.ndarray


def new_flat_index(dim: int, metric: str = "l2") -> AnyIndex:
    """Exact float index with arbitrary int64 ids. metric: l2 (squared), ip, l1."""
    metrics = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT, "l1": faiss.METRIC_L1}
    return faiss.IndexIDMap2(faiss.IndexFlat(dim, metrics[metric]))


def new_binary_flat_index(bits: int) -> AnyIndex:
    """Exact Hamming index over ``bits``-bit codes with arbitrary int64 ids."""
    return faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))


def is_binary(index: AnyIndex) -> bool:
    return isinstance(index, faiss.IndexBinary)


def describe(index: AnyIndex) -> str:
    """A short human-readable index type, e.g. 'IndexBinaryFlat' or 'IndexIVFPQ'."""
    if isinstance(index, faiss.IndexBinaryIDMap | faiss.IndexBinaryIDMap2):
        return type(faiss.downcast_IndexBinary(index.index)).__name__
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return type(faiss.downcast_index(index.index)).__name__
    return type(index).__name__


class VectorIndex:
    """Thread-safe FAISS index holder. ``factory`` makes a fresh empty index (used by reset)."""

    def __init__(self, factory: Callable[[], AnyIndex]) -> None:
        self._factory = factory
        self._lock = RWLock()
        self._index = factory()

    @property
    def binary(self) -> bool:
        return is_binary(self._index)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def count(self) -> int:
        return int(self._index.ntotal)

    def type_name(self) -> str:
        return describe(self._index)

    # -- writes ------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.uint8 if self.binary else np.float32)
        with self._lock.write():
            self._index.add_with_ids(vectors, ids)

    def remove_range(self, lo: int, hi: int) -> int:
        """Remove every id in [lo, hi). Returns how many were removed."""
        with self._lock.write():
            return int(self._index.remove_ids(faiss.IDSelectorRange(lo, hi)))

    def replace(self, index: AnyIndex) -> None:
        """Swap in another index (e.g. one trained off to the side) atomically."""
        with self._lock.write():
            self._index = index

    def adopt(self, other: VectorIndex) -> None:
        """Take over the index held by ``other`` (built off to the side) and its factory."""
        with self._lock.write():
            self._index, self._factory = other._index, other._factory

    def reset(self) -> None:
        self.replace(self._factory())

    # -- reads -------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest neighbours per query row; ids are -1 where fewer than k exist."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8 if self.binary else np.float32)
        with self._lock.read():
            k = max(1, min(k, int(self._index.ntotal)))
            return self._index.search(queries, k)

    def range_search(self, queries: np.ndarray, max_distance: float) -> list[RangeResult]:
        """All entries with distance <= max_distance, per query row (inclusive, exact)."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8 if self.binary else np.float32)
        with self._lock.read():
            if self._index.ntotal == 0:
                return [RangeResult(np.empty(0), np.empty(0, dtype=np.int64)) for _ in queries]
            # FAISS keeps distances strictly below the radius; make the bound inclusive.
            if self.binary:
                radius = int(min(np.floor(max_distance), self.dim)) + 1  # dim: bits per code
            else:
                radius = float(np.nextafter(np.float32(max_distance), np.float32(np.inf)))
            lims, distances, ids = self._index.range_search(queries, radius)
        return [
            RangeResult(distances[lims[i] : lims[i + 1]], ids[lims[i] : lims[i + 1]])
            for i in range(len(queries))
        ]

    def reconstruct(self, index_id: int) -> np.ndarray:
        with self._lock.read():
            return self._index.reconstruct(int(index_id))

    def with_index(self, fn: Callable[[AnyIndex], Any]) -> Any:
        """Run ``fn`` on the raw FAISS index under the read lock (for feature-specific searches)."""
        with self._lock.read():
            return fn(self._index)

    # -- persistence -------------------------------------------------------------------------------

    def serialize(self) -> bytes:
        with self._lock.read():
            if self.binary:
                return faiss.serialize_index_binary(self._index).tobytes()
            return faiss.serialize_index(self._index).tobytes()

    @staticmethod
    def deserialize(data: bytes, binary: bool) -> AnyIndex:
        buf = np.frombuffer(data, dtype=np.uint8)
        return faiss.deserialize_index_binary(buf) if binary else faiss.deserialize_index(buf)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new content, never a mix.

    The temporary name is unique per writer: replicas sharing a data dir must not write into one
    another's half-written file."""
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
