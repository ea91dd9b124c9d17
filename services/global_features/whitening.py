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
from dataclasses import dataclass

import numpy as np

from services.common.vectors import l2_normalize


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


def train_pca_whitening(raw: np.ndarray, dim: int = 0, power: float = 0.5, eps: float = 1e-6) -> PCAWhitening:
    """Learn whitening from raw vectors (n, d). ``dim`` 0 keeps every direction the data spans
    (at most n - 1); directions with (numerically) no variance are always dropped."""
    x = np.asarray(raw, dtype=np.float64)
    n, _d = x.shape
    if n < 2:
        raise ValueError("PCA whitening needs at least 2 vectors")
    mean = x.mean(axis=0)
    centred = x - mean
    # Eigen-decomposition via SVD of the centred data: stable and cheap for n << d or d << n alike.
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = singular**2 / max(n - 1, 1)
    keep = eigenvalues > eps * max(float(eigenvalues[0]), eps)
    k = int(keep.sum()) if dim <= 0 else min(dim, int(keep.sum()))
    projection = vt[:k].T / eigenvalues[:k] ** power
    return PCAWhitening(mean.astype(np.float32), projection.astype(np.float32), power, n)
