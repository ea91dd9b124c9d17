"""Collection analysis over stored vectors: moments (clusters) and a 2-D map.

Plain numpy and FAISS, no HTTP: the kit's analysis routes (services/common/features/analysis_routes.py) run
these where the vectors are, and the gateway composes the answers (gateway/explore.py). Rows are
compared by cosine: every function L2-normalises its input first.

- **Moments** are k-means clusters (spherical). Past a few hundred clusters one k-means over every
  row costs n * k * d per iteration (100,000 rows at 30% granularity: 30,000 clusters), so the rows
  are split by a coarse k-means of sqrt(k) clusters and each part is clustered on its own with its
  share of k: n * 2 sqrt(k) * d per iteration instead. Rows are first projected by PCA to
  ``ANALYSIS_DIM`` dimensions; representatives and member order are computed there too (in 1280
  dimensions the distances cost more than the clustering). ``density`` is DBSCAN on cosine distance
  (core rows: ``min_samples`` neighbours within ``eps``; clusters: connected core rows plus the
  rows they reach; the rest is noise); past ``EXACT_DENSITY_LIMIT`` rows the neighbourhoods are
  those of an approximate k-nearest-neighbour graph instead of an exact range search.
- **The map** is a landmark t-SNE: t-SNE (exact, PCA-initialised, so the same rows give the same
  map) over at most ``MAP_LANDMARKS`` k-means centroids, and every row placed at the
  similarity-weighted mean of its nearest landmarks. Full t-SNE or UMAP over 100,000 rows costs
  minutes on two cores and cannot place a new row without refitting; here a new row is placed by
  the same interpolation, against the landmarks of the cached map.

Duplicate groups and the capture-time split of moments are the gateway's (gateway/duplicates/,
gateway/moments.py): only it knows the links and the capture times.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

Progress = Callable[[float], None]

ANALYSIS_DIM = 64
MAP_LANDMARKS = 1000
#: One k-means over every row up to this many clusters; two levels above.
FLAT_KMEANS_LIMIT = 256


def _quiet(_: float) -> None:
    pass


P = ParamSpec("P")
R = TypeVar("R")


def single_threaded(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with one BLAS and one FAISS thread. On shared, busy cores every parallel region
    waits for its slowest thread: OpenBLAS and OpenMP teams made the map of 10,000 rows 3-5x slower
    in wall time (109 s against 21 s) than one thread; and a service keeps its other core for the
    searches it answers meanwhile."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                return fn(*args, **kwargs)
        finally:
            faiss.omp_set_num_threads(threads)

    return wrapper


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pca_basis(
    x: np.ndarray, dim: int, max_train: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, the ``dim`` main directions as rows) of a sample of ``x``. The eigenvectors of the
    d x d covariance, not an SVD of the sample: 30x faster for 1280-d rows on busy cores."""
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), min(len(x), max_train), replace=False)].astype(np.float64)
    mean = sample.mean(0)
    centred = sample - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return mean.astype(np.float32), np.ascontiguousarray(vectors[:, ::-1][:, :dim].T, dtype=np.float32)


def pca_project(x: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Unit rows projected on their ``dim`` main directions, re-normalised. Rows with at most
    ``dim`` columns, or at most ``dim`` rows, come back unchanged."""
    if x.shape[1] <= dim or x.shape[0] <= dim:
        return x
    mean, basis = pca_basis(x, dim, seed=seed)
    return unit_rows((x - mean) @ basis.T)


# -- moments -------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Rows of one moment, nearest its centroid first (``members[0]`` is the representative)."""

    members: list[int]
    distances: list[float]  # cosine distance of each member to the centroid


@dataclass
class Clustering:
    clusters: list[Cluster]  # largest first
    noise: list[int] = field(default_factory=list)


def _kmeans(x: np.ndarray, k: int, seed: int, iterations: int) -> np.ndarray:
    """Labels of a spherical k-means of ``x`` into ``k`` clusters (k <= len(x))."""
    if k <= 1:
        return np.zeros(len(x), dtype=np.int64)
    if k >= len(x):
        return np.arange(len(x), dtype=np.int64)
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=iterations,
        spherical=True,
        seed=seed,
        min_points_per_centroid=1,
        max_points_per_centroid=256,
    )
    km.train(x)
    _, labels = km.index.search(x, 1)
    return labels[:, 0].astype(np.int64)


@single_threaded
def kmeans_labels(
    x: np.ndarray, k: int, seed: int = 0, iterations: int = 20, progress: Progress = _quiet
) -> np.ndarray:
    """Cluster labels 0..k-1 (some may be empty) of unit rows ``x``; two levels past FLAT_KMEANS_LIMIT."""
    n = len(x)
    k = max(1, min(k, n))
    if k <= FLAT_KMEANS_LIMIT:
        labels = _kmeans(x, k, seed, iterations)
        progress(1.0)
        return labels
    coarse_k = math.ceil(math.sqrt(k))
    coarse = _kmeans(x, coarse_k, seed, max(5, iterations // 2))  # only splits the work
    progress(0.1)
    labels = np.empty(n, dtype=np.int64)
    parts = [np.flatnonzero(coarse == c) for c in range(coarse_k)]
    # Each part gets its share of k (largest remainders first), at least one cluster.
    shares = np.array([k * len(p) / n for p in parts])
    counts = np.maximum(np.floor(shares).astype(int), 1)
    for c in np.argsort(-(shares - np.floor(shares)))[: max(0, k - int(counts.sum()))]:
        counts[c] += 1
    offset = 0
    for done, (rows, kc) in enumerate(zip(parts, counts, strict=True)):
        if len(rows) == 0:
            continue
        kc = int(min(kc, len(rows)))
        labels[rows] = _kmeans(x[rows], kc, seed, iterations) + offset
        offset += kc
        progress(0.1 + 0.9 * (done + 1) / coarse_k)
    return labels


def clusters_from_labels(x: np.ndarray, labels: np.ndarray) -> Clustering:
    """Clusters of unit rows ``x`` by ``labels`` (-1 = noise): members ordered by cosine distance to
    the normalised mean of the cluster, largest cluster first (ties: smallest first row)."""
    noise = np.flatnonzero(labels < 0).tolist()
    keep = labels >= 0
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return Clustering([], noise)
    order = rows[np.argsort(labels[rows], kind="stable")]
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    ends = np.r_[starts[1:], len(order)]
    group = np.repeat(np.arange(len(starts)), ends - starts)
    distance = np.empty(len(order), np.float32)
    sums = np.zeros((len(starts), x.shape[1]), np.float32)
    chunk = 16_384  # bounded temporaries: a gathered copy of 100,000 1280-d rows is 500 MB
    for lo in range(0, len(order), chunk):
        g = group[lo : lo + chunk]
        local = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        sums[g[local]] += np.add.reduceat(x[order[lo : lo + chunk]], local, axis=0)
    centroids = unit_rows(sums)
    for lo in range(0, len(order), chunk):
        rows_chunk = x[order[lo : lo + chunk]]
        distance[lo : lo + chunk] = 1.0 - np.einsum("nd,nd->n", rows_chunk, centroids[group[lo : lo + chunk]])
    np.maximum(distance, 0.0, out=distance)
    final = np.lexsort((order, distance, group))  # by cluster, then distance, then row
    members_all, distances_all = order[final].tolist(), distance[final].tolist()
    clusters = [
        Cluster(members_all[start:end], distances_all[start:end])
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    clusters.sort(key=lambda c: (-len(c.members), min(c.members)))
    return Clustering(clusters, noise)


@single_threaded
def kmeans_moments(
    x: np.ndarray, n_clusters: int, seed: int = 0, dim: int = ANALYSIS_DIM, progress: Progress = _quiet
) -> Clustering:
    if len(x) == 0:
        return Clustering([])
    reduced = pca_project(unit_rows(x), dim, seed=seed)
    return clusters_from_labels(reduced, kmeans_labels(reduced, n_clusters, seed, progress=progress))


def normalised_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """NMI of two labelings (arithmetic mean of the entropies): how well moments agree with classes."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    p = joint / len(a)
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha, hb = (float(-(q[q > 0] * np.log(q[q > 0])).sum()) for q in (pa, pb))
    return 2 * mi / (ha + hb) if ha + hb > 0 else 1.0


def labels_of(found: Clustering, n: int) -> np.ndarray:
    """One label per row: its moment's index; each noise row a label of its own."""
    out = np.arange(n) + n
    for k, cluster in enumerate(found.clusters):
        out[cluster.members] = k
    return out


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label (its smallest node) of each of ``n`` nodes linked by edges a[i]-b[i]."""
    parent = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while True:  # hook every root to the smallest root it touches, then jump pointers to roots
        la, lb = parent[a], parent[b]
        low = np.minimum(la, lb)
        hooked = parent.copy()
        np.minimum.at(hooked, la, low)
        np.minimum.at(hooked, lb, low)
        while not np.array_equal(jumped := hooked[hooked], hooked):
            hooked = jumped
        if np.array_equal(hooked, parent):
            return parent
        parent = hooked


#: Up to this many rows density clustering is exact DBSCAN (a range search over every row); past it,
#: the neighbourhoods come from an approximate k-nearest-neighbour graph (IVF). The range search's
#: cost and output grow with the square of a dense region's size: 454 s for 100,000 rows.
EXACT_DENSITY_LIMIT = 20_000
#: Neighbours per row in the approximate graph (at least min_samples).
DENSITY_NEIGHBOURS = 24
#: IVF lists probed per row of the approximate graph.
DENSITY_NPROBE = 8


def _neighbours_within(
    reduced: np.ndarray, eps: float, min_samples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, neighbour, cosine similarity) of every pair within cosine distance ``eps``, the row
    itself included: all of them up to EXACT_DENSITY_LIMIT rows, else those among each row's
    ``max(DENSITY_NEIGHBOURS, min_samples)`` approximate nearest (IVF, sqrt(n) * 4 lists)."""
    n, d = reduced.shape
    if n <= EXACT_DENSITY_LIMIT:
        index = faiss.IndexFlatIP(d)
        index.add(reduced)
        lims, sims, ids = index.range_search(reduced, 1.0 - eps)
        return np.repeat(np.arange(n), np.diff(lims).astype(np.int64)), ids.astype(np.int64), sims
    lists = int(4 * math.sqrt(n))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(n, min(n, 64 * lists), replace=False)
    index.train(reduced[np.sort(sample)])
    index.add(reduced)
    index.nprobe = DENSITY_NPROBE
    k = max(DENSITY_NEIGHBOURS, min_samples)
    sims, ids = index.search(reduced, k)
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    keep = (ids >= 0) & (sims >= 1.0 - eps) & (ids != rows)
    # every row neighbours itself once (an approximate search may miss it)
    source = np.concatenate([np.arange(n), rows[keep]])
    target = np.concatenate([np.arange(n), ids[keep].astype(np.int64)])
    return source, target, np.concatenate([np.ones(n, np.float32), sims[keep]])


@single_threaded
def density_moments(
    x: np.ndarray,
    eps: float = 0.2,
    min_samples: int = 3,
    dim: int = ANALYSIS_DIM,
    progress: Progress = _quiet,
) -> Clustering:
    """DBSCAN with cosine distance ``eps`` (neighbours within eps, the row itself included); past
    EXACT_DENSITY_LIMIT rows over an approximate neighbour graph (see :func:`_neighbours_within`)."""
    n = len(x)
    if n == 0:
        return Clustering([])
    reduced = pca_project(unit_rows(x), dim)
    source, ids, sims = _neighbours_within(reduced, eps, min_samples)
    progress(0.8)
    counts = np.bincount(source, minlength=n)
    core = counts >= min_samples
    both_core = core[source] & core[ids]
    labels = connected_components(n, source[both_core], ids[both_core])
    labels = np.where(core, labels, -1)
    # Border rows join the cluster of their most similar core neighbour.
    border = ~core[source] & core[ids]
    if border.any():
        rows, others, similarity = source[border], ids[border], sims[border]
        order = np.lexsort((-similarity, rows))
        first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        labels[rows[first]] = labels[others[first]]
    progress(1.0)
    return clusters_from_labels(reduced, labels)


# -- the map -------------------------------------------------------------------------------------


def _tsne_affinities(d2: np.ndarray, perplexity: float) -> np.ndarray:
    """Symmetric t-SNE input affinities from squared distances (binary search per row)."""
    n = len(d2)
    target = math.log(perplexity)
    p = np.zeros_like(d2)
    for i in range(n):
        row = np.delete(d2[i], i)
        lo, hi, beta = 0.0, np.inf, 1.0
        for _ in range(64):
            w = np.exp(-(row - row.min()) * beta)
            total = w.sum()
            h = math.log(total) + beta * float((row - row.min()) @ w) / total
            if abs(h - target) < 1e-4:
                break
            if h > target:
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        p[i, np.arange(n) != i] = w / total
    p = (p + p.T) / (2 * n)
    return np.maximum(p, 1e-12)


def tsne(x: np.ndarray, perplexity: float = 30.0, iterations: int = 750, seed: int = 0) -> np.ndarray:
    """Exact 2-D t-SNE (van der Maaten and Hinton, 2008) of a few thousand rows at most: PCA
    initialisation (deterministic, keeps the global arrangement), early exaggeration, momentum and
    per-coordinate gains."""
    n = len(x)
    if n == 1:
        return np.zeros((1, 2), np.float32)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    y = centred @ vt[:2].T
    if y.shape[1] < 2:
        y = np.c_[y, np.zeros(n)]
    y = y / max(float(np.std(y[:, 0])), 1e-12) * 1e-4
    y = np.asarray(y, np.float64)
    if n <= 3:
        return (y / max(float(np.abs(y).max()), 1e-12)).astype(np.float32)
    sq = np.einsum("nd,nd->n", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0).astype(np.float64)
    p = _tsne_affinities(d2, min(perplexity, (n - 1) / 3)).astype(np.float32)
    y = y.astype(np.float32)
    velocity = np.zeros_like(y)
    gains = np.ones_like(y)
    learning_rate = max(n / 12.0 / 4.0, 50.0)
    for it in range(iterations):
        exaggeration = 12.0 if it < 250 else 1.0
        momentum = 0.5 if it < 250 else 0.8
        sy = np.einsum("nd,nd->n", y, y)
        num = 1.0 / (1.0 + np.maximum(sy[:, None] + sy[None, :] - 2 * y @ y.T, 0))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exaggeration * p - q) * num
        grad = 4.0 * (pq.sum(1)[:, None] * y - pq @ y)
        same = np.sign(grad) == np.sign(velocity)
        gains = np.where(same, gains * 0.8, gains + 0.2).clip(0.01)
        velocity = momentum * velocity - learning_rate * gains * grad
        y = y + velocity
        y -= y.mean(0)
    return y.astype(np.float32)


@dataclass
class Layout:
    """A 2-D map: landmark rows (unit, reduced space), their positions, and the projection that
    maps new full-space rows to the reduced space."""

    mean: np.ndarray | None
    basis: np.ndarray | None
    landmarks: np.ndarray
    landmark_xy: np.ndarray
    neighbours: int = 8
    sharpness: float = 20.0

    def reduce(self, x: np.ndarray) -> np.ndarray:
        x = unit_rows(x)
        if self.basis is None:
            return x
        return unit_rows((x - self.mean) @ self.basis.T)

    def place(self, x: np.ndarray) -> np.ndarray:
        """Positions of rows: the mean of the nearest landmarks' positions weighted by
        exp(sharpness * cosine similarity), so a row on a landmark sits on it."""
        if len(x) == 0:
            return np.zeros((0, 2), np.float32)
        reduced = self.reduce(x)
        k = min(self.neighbours, len(self.landmarks))
        index = faiss.IndexFlatIP(self.landmarks.shape[1])
        index.add(self.landmarks)
        sims, ids = index.search(reduced, k)
        weights = np.exp(self.sharpness * (sims - sims[:, :1]))
        weights /= weights.sum(1, keepdims=True)
        return np.einsum("nk,nkd->nd", weights, self.landmark_xy[ids]).astype(np.float32)


@single_threaded
def fit_layout(
    x: np.ndarray,
    landmarks: int = MAP_LANDMARKS,
    seed: int = 0,
    dim: int = ANALYSIS_DIM,
    progress: Progress = _quiet,
) -> tuple[Layout, np.ndarray]:
    """A map of rows ``x``: (the layout, to place later rows; the rows' positions, scaled to [-1, 1])."""
    if len(x) == 0:
        empty = np.zeros((0, 2), np.float32)
        return Layout(None, None, np.zeros((0, 1), np.float32), empty), empty
    x = unit_rows(x)
    mean = basis = None
    reduced = x
    if x.shape[1] > dim and len(x) > dim:
        mean, basis = pca_basis(x, dim, seed=seed)
        reduced = unit_rows((x - mean) @ basis.T)
    if len(x) <= landmarks:
        points = reduced
    else:
        # 40 rows per landmark are plenty to place centroids (FAISS samples them)
        km = faiss.Kmeans(
            reduced.shape[1], landmarks, niter=15, spherical=True, seed=seed, max_points_per_centroid=40
        )
        km.train(reduced)
        points = unit_rows(km.centroids)
    progress(0.3)
    xy = tsne(points, seed=seed)
    progress(0.9)
    scale = max(float(np.abs(xy).max()), 1e-12)
    layout = Layout(mean, basis, points, (xy / scale).astype(np.float32))
    positions = layout.landmark_xy if len(x) <= landmarks else layout.place(x)
    progress(1.0)
    return layout, positions
