"""PCA whitening learnt from the collection's own vectors (plain numpy).

x -> normalise(((x - mean) @ V) * eigenvalues ** -power): centring removes the direction every
vector shares, whitening evens out the variance of the principal directions so frequent visual
patterns count less (Jégou & Chum, ECCV 2012). ``power`` 0.5 is full whitening; smaller values
shrink towards plain PCA, which is safer when the collection is small. Trained on raw vectors and
applied to raw vectors only, so it never stacks.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.common.features.vectors import l2_normalize


@dataclass(frozen=True)
class PCAWhitening:
    mean: np.ndarray  # (d,) float32
    projection: np.ndarray  # (d, k) float32: eigenvectors scaled by eigenvalue ** -power
    power: float
    trained_on: int

    @property
    def in_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw L2-normalised vectors (n, d) -> whitened, renormalised (n, k)."""
        return l2_normalize((np.asarray(raw, np.float32) - self.mean) @ self.projection)

    def digest(self) -> str:
        h = hashlib.sha256(self.mean.tobytes())
        h.update(self.projection.tobytes())
        h.update(repr(self.power).encode())
        return h.hexdigest()[:16]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            mean=self.mean,
            projection=self.projection,
            power=np.float64(self.power),
            trained_on=np.int64(self.trained_on),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PCAWhitening:
        with np.load(io.BytesIO(data)) as z:
            return cls(
                z["mean"].astype(np.float32),
                z["projection"].astype(np.float32),
                float(z["power"]),
                int(z["trained_on"]),
            )


def chosen_dim(eigenvalues: np.ndarray, n: int, energy: float, per_vector: float) -> int:
    """Dimensions kept when none is asked for: the fewest leading eigenvalues that explain ``energy``
    of the variance, and never more than ``per_vector`` * n (a direction needs many vectors before its
    variance is estimated well enough to be scaled up by whitening)."""
    total = float(eigenvalues.sum())
    if total <= 0:
        return 1
    by_energy = int(np.searchsorted(np.cumsum(eigenvalues) / total, energy) + 1)
    return max(1, min(by_energy, int(per_vector * n), len(eigenvalues)))


def train_pca_whitening(
    raw: np.ndarray,
    dim: int = 0,
    power: float = 0.5,
    eps: float = 1e-6,
    energy: float = 0.9,
    per_vector: float = 0.1,
) -> PCAWhitening:
    """Learn whitening from raw vectors (n, d). ``dim`` 0 chooses it from the data (:func:`chosen_dim`
    with ``energy`` and ``per_vector``); directions with (numerically) no variance are always dropped."""
    x = np.asarray(raw, dtype=np.float64)
    n, _d = x.shape
    if n < 2:
        raise ValueError("PCA whitening needs at least 2 vectors")
    mean = x.mean(axis=0)
    centred = x - mean
    # Eigen-decomposition via SVD of the centred data: stable and cheap for n << d or d << n alike.
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = singular**2 / max(n - 1, 1)
    keep = int((eigenvalues > eps * max(float(eigenvalues[0]), eps)).sum())
    k = min(dim if dim > 0 else chosen_dim(eigenvalues[:keep], n, energy, per_vector), keep)
    projection = vt[:k].T / eigenvalues[:k] ** power
    return PCAWhitening(mean.astype(np.float32), projection.astype(np.float32), power, n)


@dataclass(frozen=True)
class CheckedWhitening:
    """Whitening trained on every vector, and the self-check that decides whether it may be used."""

    whitening: PCAWhitening
    before: float  # the self-check figure with raw vectors
    after: float  # the same figure with whitening learnt without the held-back vectors
    held_back: int

    @property
    def keeps_quality(self) -> bool:
        return self.after >= self.before


def train_checked_whitening(
    raw: np.ndarray,
    dim: int = 0,
    power: float = 0.5,
    energy: float = 0.9,
    per_vector: float = 0.1,
    held_back: float = 0.1,
    max_held_back: int = 1000,
    seed: int = 0,
) -> CheckedWhitening:
    """Train whitening on ``raw`` and measure, on the collection itself, whether it keeps search as
    good as raw vectors (:func:`self_check`)."""
    x = np.asarray(raw, np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    count = max(1, min(len(x) - 2, round(held_back * len(x)), max_held_back))
    queries, training = order[:count], order[count:]
    check = train_pca_whitening(x[training], dim, power, energy=energy, per_vector=per_vector)
    before = self_check(x, queries, lambda v: v, seed)
    after = self_check(x, queries, check.apply, seed)
    final = train_pca_whitening(x, dim, power, energy=energy, per_vector=per_vector)
    return CheckedWhitening(final, before, after, count)


#: what :func:`self_check` measures, as the training reply names it
SELF_CHECK_FIGURE = "neighbour agreement@10 of held-back vectors"


def self_check(
    raw: np.ndarray,
    queries: np.ndarray,
    mapping: Callable[[np.ndarray], np.ndarray],
    seed: int = 0,
    k: int = 10,
) -> float:
    """A label-free figure of search quality in the space ``mapping`` gives, on the collection itself.

    For each held-back query its k nearest images (itself left out) should also be near one another:
    the mean share of the query's k neighbours that are among the k neighbours of its nearest one.
    Classes and copies form tight groups where this is high; whitening that scales up directions of
    noise scatters the neighbourhoods and lowers it.
    """
    rows = np.ascontiguousarray(mapping(np.asarray(raw, np.float32)), np.float32)
    neighbours = _neighbours(rows, queries, k)
    firsts = neighbours[:, 0]
    of_first = _neighbours(rows, firsts, k)
    shared = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(neighbours, of_first, strict=True)]
    return float(np.mean(shared) / k)


def _neighbours(rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The k nearest rows (exact inner product of unit vectors) of each query row index, itself
    left out."""
    import faiss

    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    _, ids = index.search(rows[queries], k + 1)
    return np.stack([row[row != q][:k] for q, row in zip(queries, ids, strict=True)])
