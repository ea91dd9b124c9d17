"""How each indexed service's costs grow with the collection: 10k / 100k / 1M items.

The models cannot embed a million photos on this machine, so the collection is synthetic: rows with
the shape, dtype and value statistics of the service's real features (extracted from the photos),
added straight into the service's own index (its ``new_index()`` factory wrapped in the kit's
``VectorIndex``, as the service builds it). Queries are real: the service's ``query_vectors`` of a
real photo (mirrored row included where the service adds one), searched with the service's own
``search_vectors``. The reference is an exhaustive numpy scan over the same rows in the same run.
"""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faiss
import numpy as np

from bench.timing import percentiles_ms
from services.common.features.feature import VectorFeature
from services.common.features.index import VectorIndex, is_binary
from services.common.schemas import SearchParams

#: service -> its feature class (the object the service wires to the kit)
FEATURES = {
    "phash": "services.phash.service:PhashFeature",
    "color": "services.color.service:ColorFeature",
    "global_features": "services.global_features.service:GlobalFeature",
    "image_text": "services.image_text.service:ImageTextFeature",
}
CHUNK = 50_000
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


@dataclass
class Point:
    items: int
    add_per_s: float
    search_ms: dict[str, float]
    brute_ms: dict[str, float]
    agreement: float  # share of FAISS top-10 ids also in the brute-force top-10
    index_bytes_per_item: float  # serialized index size / items (the snapshot, ~ its memory)


@dataclass
class ServiceScale:
    service: str
    index_type: str = ""
    stored_bytes: int = 0
    row_bytes: int = 0
    extract_per_s: float = float("nan")
    points: list[Point] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str = ""


def make_feature(service: str, env: dict[str, str]) -> VectorFeature:
    """The service's feature object with its settings from ``env`` (same env the stack runs with)."""
    import os

    module, _, cls = FEATURES[service].partition(":")
    feature_cls = getattr(importlib.import_module(module), cls)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from services.registry import SERVICES

        feature = feature_cls(SERVICES[service].settings_class()())
        feature.load()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return feature


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


def brute_force(rows: np.ndarray, queries: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, float]:
    """Exhaustive top-k ids (best distance over the query rows, chunked to bound memory) and the
    k-th best distance (FAISS's distance: squared for L2)."""
    best = np.full(len(rows), np.inf, dtype=np.float64)
    for lo in range(0, len(rows), CHUNK):
        block = rows[lo : lo + CHUNK]
        if metric == "hamming":
            d = _POPCOUNT[np.bitwise_xor(block[None], queries[:, None])].sum(2)
        elif metric == "l1":
            d = np.stack([np.abs(block - q).sum(1) for q in queries])
        elif metric == "ip":
            d = -(queries @ block.T)
        else:
            d = (block * block).sum(1)[None] - 2 * (queries @ block.T) + (queries * queries).sum(1)[:, None]
        best[lo : lo + CHUNK] = d.min(0)
    top = np.argpartition(best, k)[:k]
    return top, float(best[top].max())


def metric_of(index: Any) -> str:
    if is_binary(index):
        return "hamming"
    kind = faiss.downcast_index(index).metric_type
    return {faiss.METRIC_L1: "l1", faiss.METRIC_INNER_PRODUCT: "ip"}.get(kind, "l2")


def measure(
    service: str,
    env: dict[str, str],
    photos: list[Path],
    sizes: list[int],
    repeats: int,
    max_bytes: float,
    progress: Callable[[str], None] = print,
) -> ServiceScale:
    out = ServiceScale(service)
    feature = make_feature(service, env)
    faiss.omp_set_num_threads(feature.settings.search_threads)  # as the service does
    try:
        blobs = [p.read_bytes() for p in photos]
        feature.extract(blobs[0])  # warm-up (numba compile, model first call)
        t0 = time.perf_counter()
        stored = [feature.extract(b) for b in blobs]
        out.extract_per_s = len(blobs) / (time.perf_counter() - t0)
        out.stored_bytes = len(stored[0])
        real = np.stack([feature.vector_from_stored(s) for s in stored])
        out.row_bytes = real[0].nbytes
        params = feature.QueryParams()
        queries = [feature.query_vectors(b, params) for b in blobs[: max(repeats, 1)]]
        make_rows = synthetic(real, np.random.default_rng(0))
        for n in sizes:
            if n * out.row_bytes > max_bytes:
                out.skipped.append(
                    f"{n:,} items: {n * out.row_bytes / 2**30:.1f} GiB of rows is over the "
                    f"--max-gib budget of this run"
                )
                continue
            gc.collect()
            index = VectorIndex(feature.index_layout().new_index)
            out.index_type = index.type_name()
            rows = np.empty((n, real.shape[1]), dtype=real.dtype)
            for lo in range(0, n, CHUNK):
                rows[lo : lo + CHUNK] = make_rows(min(CHUNK, n - lo))
            t0 = time.perf_counter()
            for lo in range(0, n, CHUNK):
                index.add(np.arange(lo, min(lo + CHUNK, n), dtype=np.int64), rows[lo : lo + CHUNK])
            add_s = time.perf_counter() - t0
            index_per_item = len(index.serialize()) / n
            search_ms, brute_ms, agreement = _timings(feature, index, rows, queries, repeats)
            out.points.append(
                Point(n, n / add_s, {"k=10": search_ms}, {"k=10": brute_ms}, agreement, index_per_item)
            )
            progress(
                f"scale {service} {n:,}: add {n / add_s:,.0f}/s, k=10 p50 {search_ms:.2f} ms, "
                f"brute force {brute_ms:.1f} ms, agreement {agreement:.2f}"
            )
            del index, rows
    finally:
        feature.close()
    return out


def _timings(
    feature: VectorFeature, index: VectorIndex, rows: np.ndarray, queries: list[np.ndarray], repeats: int
) -> tuple[float, float, float]:
    """p50 ms of the service's search and of brute force; top-10 agreement between them (share of
    the service's top 10 within the brute-force 10th distance, so ties do not count as misses)."""
    metric = metric_of(index.with_index(lambda i: i))
    feature.collection = SimpleNamespace(index=index)  # search_vectors reads collection.index
    try:
        turn = iter(range(10**9))
        search = SearchParams(k=10)
        ours = percentiles_ms(
            lambda: feature.search_vectors(queries[next(turn) % len(queries)], search), repeats
        )
        agree = []
        for q in queries:
            _, tenth = brute_force(rows, q, metric, 10)
            hits = feature.search_vectors(q, search)
            tol = 1e-3 * max(abs(tenth), 1.0)
            agree.append(sum(h["distance"] <= tenth + tol for h in hits) / 10)
        brute = percentiles_ms(
            lambda: brute_force(rows, queries[0], metric, 10), max(2, repeats // 5), warmup=1
        )
    finally:
        feature.collection = None
    return ours["p50"], brute["p50"], float(np.mean(agree))


def run(
    services: list[str],
    env: dict[str, str],
    photos: list[Path],
    sizes: list[int],
    repeats: int,
    max_bytes: float,
    progress: Callable[[str], None] = print,
    random_weights: frozenset[str] = frozenset(),
) -> list[ServiceScale]:
    """``random_weights``: services whose pretrained weights are missing here, measured with random
    weights (what an index costs does not depend on the vector values)."""
    results = []
    for service in services:
        if service not in FEATURES:
            results.append(
                ServiceScale(
                    service,
                    error="not a one-vector-per-image index; see its own benchmark script for its costs",
                )
            )
            continue
        service_env = env
        if service in random_weights:
            service_env = {
                **env,
                "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
                f"AMBIENCE_{service.upper()}_WEIGHTS": "random",
            }
        try:
            result = measure(service, service_env, photos, sizes, repeats, max_bytes, progress)
            if service in random_weights:
                result.skipped.insert(
                    0,
                    "random weights (the pretrained ones are not on this machine): index costs do not "
                    "depend on the vector values, and extraction runs the real architecture",
                )
            results.append(result)
        except Exception as exc:  # a model service without weights: report, keep going
            progress(f"scale {service}: not measured ({type(exc).__name__}: {exc})")
            results.append(ServiceScale(service, error=f"{type(exc).__name__}: {exc}"))
    return results


def growth_exponent(points: list[Point]) -> float:
    """Slope of log(latency) over log(items): 1 = linear (exhaustive), < 1 = sub-linear."""
    if len(points) < 2:
        return float("nan")
    x = np.log([p.items for p in points])
    y = np.log([p.search_ms["k=10"] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def markdown(results: list[ServiceScale]) -> str:
    lines = [
        "| service | index | items | add rows/s | search k=10 p50 ms | brute force p50 ms | speed-up "
        "| top-10 agreement with brute force | index bytes/item | stored bytes/item |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in results:
        if r.error:
            notes.append(f"- {r.service}: not measured ({r.error})")
            continue
        for p in r.points:
            lines.append(
                f"| {r.service} | {r.index_type} | {p.items:,} | {p.add_per_s:,.0f} | "
                f"{p.search_ms['k=10']:.2f} | {p.brute_ms['k=10']:.1f} | "
                f"{p.brute_ms['k=10'] / p.search_ms['k=10']:.1f}x | {p.agreement:.2f} | "
                f"{p.index_bytes_per_item:,.0f} | {r.stored_bytes:,} |"
            )
        notes += [f"- {r.service}: {s}" for s in r.skipped]
    growth = [
        f"{r.service} {growth_exponent(r.points):.2f}" for r in results if len(r.points) >= 2 and not r.error
    ]
    extract = [f"{r.service} {r.extract_per_s:.1f}" for r in results if not r.error]
    text = "\n".join(lines)
    text += (
        "\n\nGrowth exponent of search latency (slope of log latency over log items; 1 = linear): "
        + ", ".join(growth)
        + ".\n\nFeature extraction in-process (decode + feature, images/s on the photos): "
        + ", ".join(extract)
        + "."
    )
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text
