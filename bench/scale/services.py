"""How each indexed service's costs grow with the collection: 10k / 100k / 1M items.

The models cannot embed a million photos on this machine, so the collection is synthetic: rows with
the shape, dtype and value statistics of the service's real features (extracted from the photos),
added straight into the service's own index (its ``new_index()`` factory wrapped in the kit's
``VectorIndex``, as the service builds it). Queries are real: the service's ``query_vectors`` of a
real photo (mirrored row included where the service adds one), searched with the service's own
``search_vectors``. The reference is an exhaustive numpy scan over the same rows in the same run.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np

from ambience_support.photos import PHOTOS, photo_paths
from bench.harness import progress
from bench.timing import percentiles_ms
from bench.vectors import brute_force, metric_of, synthetic
from bench.weights import offline_env, random_weights_env
from services.common.errors import WeightsMissingError
from services.common.features.feature import VectorFeature
from services.common.features.index import VectorIndex
from services.common.schemas import SearchParams

#: service -> its feature class (the object the service wires to the kit)
FEATURES = {
    "phash": "services.phash.service:PhashFeature",
    "color": "services.color.service:ColorFeature",
    "global_features": "services.global_features.service:GlobalFeature",
    "image_text": "services.image_text.service:ImageTextFeature",
}
CHUNK = 50_000
log = progress("scale services")


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


@dataclass
class Sample:
    """A service's feature object and its real features of the photos, which a synthetic collection
    is made like, and real queries."""

    feature: VectorFeature
    stored: list[bytes]
    real: np.ndarray  # one index row per photo
    queries: list[np.ndarray]  # the service's query rows of each photo (mirrored row included)
    extract_per_s: float

    @classmethod
    def of(cls, feature: VectorFeature, photos: list[Path]) -> Sample:
        blobs = [p.read_bytes() for p in photos]
        feature.extract(blobs[0])  # warm-up (numba compile, model first call)
        t0 = time.perf_counter()
        stored = [feature.extract(b) for b in blobs]
        extract_per_s = len(blobs) / (time.perf_counter() - t0)
        real = np.stack([feature.vector_from_stored(s) for s in stored])
        params = feature.QueryParams()
        return cls(feature, stored, real, [feature.query_vectors(b, params) for b in blobs], extract_per_s)

    def collection(self, n: int, rng: np.random.Generator) -> tuple[VectorIndex, np.ndarray, float]:
        """``n`` synthetic rows like the real ones in the service's own index: the index, the rows
        and the seconds adding them took."""
        make_rows = synthetic(self.real, rng)
        rows = np.empty((n, self.real.shape[1]), dtype=self.real.dtype)
        for lo in range(0, n, CHUNK):
            rows[lo : lo + CHUNK] = make_rows(min(CHUNK, n - lo))
        index = VectorIndex(self.feature.index_layout().new_index)
        t0 = time.perf_counter()
        for lo in range(0, n, CHUNK):
            index.add(np.arange(lo, min(lo + CHUNK, n), dtype=np.int64), rows[lo : lo + CHUNK])
        return index, rows, time.perf_counter() - t0


@contextmanager
def searching(feature: VectorFeature, index: VectorIndex) -> Iterator[str]:
    """The feature searching ``index`` with its own ``search_vectors``; yields the index's metric."""
    feature.collection = SimpleNamespace(index=index)  # search_vectors reads collection.index
    try:
        yield metric_of(index.with_index(lambda i: i))
    finally:
        feature.collection = None


def measure(
    service: str, env: dict[str, str], photos: list[Path], sizes: list[int], repeats: int, max_bytes: float
) -> ServiceScale:
    out = ServiceScale(service)
    feature = make_feature(service, env)
    faiss.omp_set_num_threads(feature.settings.search_threads)  # as the service does
    try:
        sample = Sample.of(feature, photos)
        out.extract_per_s = sample.extract_per_s
        out.stored_bytes = len(sample.stored[0])
        out.row_bytes = sample.real[0].nbytes
        rng = np.random.default_rng(0)
        for n in sizes:
            if n * out.row_bytes > max_bytes:
                out.skipped.append(
                    f"{n:,} items: {n * out.row_bytes / 2**30:.1f} GiB of rows is over the "
                    f"--max-gib budget of this run"
                )
                continue
            gc.collect()
            index, rows, add_s = sample.collection(n, rng)
            out.index_type = index.type_name()
            index_per_item = len(index.serialize()) / n
            search_ms, brute_ms, agreement = _timings(feature, index, rows, sample.queries, repeats)
            out.points.append(
                Point(n, n / add_s, {"k=10": search_ms}, {"k=10": brute_ms}, agreement, index_per_item)
            )
            log(
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
    with searching(feature, index) as metric:
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
    return ours["p50"], brute["p50"], float(np.mean(agree))


def measure_all(
    env: dict[str, str], photos: list[Path], sizes: list[int], repeats: int, max_bytes: float, tmp: Path
) -> list[ServiceScale]:
    """Every service of :data:`FEATURES`; one whose pretrained weights are missing here (image_text
    offline) is measured with random weights: what an index costs does not depend on the vector
    values."""
    results = []
    for service in FEATURES:
        try:
            try:
                results.append(measure(service, env, photos, sizes, repeats, max_bytes))
            except WeightsMissingError:
                random = {**env, **random_weights_env(service, tmp)}
                result = measure(service, random, photos, sizes, repeats, max_bytes)
                result.skipped.insert(
                    0,
                    "random weights (the pretrained ones are not on this machine): index costs do not "
                    "depend on the vector values, and extraction runs the real architecture",
                )
                results.append(result)
        except Exception as exc:  # report, keep going
            log(f"scale {service}: not measured ({type(exc).__name__}: {exc})")
            results.append(ServiceScale(service, error=f"{type(exc).__name__}: {exc}"))
    return results


def plot_latency(results: list[ServiceScale], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(results):
        if not r.points:
            continue
        n = [p.items for p in r.points]
        ax.plot(n, [p.search_ms["k=10"] for p in r.points], "o-", color=f"C{i}", label=r.service)
        brute = [p.brute_ms["k=10"] for p in r.points]
        ax.plot(n, brute, "x--", color=f"C{i}", alpha=0.6, label=f"{r.service} brute force")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the collection")
    ax.set_ylabel("query latency p50, ms (k=10)")
    ax.set_title("Search latency versus collection size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> str:
    sizes = args.sizes or ([1_000, 10_000] if args.small else [10_000, 100_000, 1_000_000])
    repeats = args.repeats or (5 if args.small else 20)
    photos = photo_paths(PHOTOS, repeats)
    if not photos:
        raise SystemExit(f"no photos in {PHOTOS} (set AMBIENCE_TEST_PHOTOS)")
    log(f"sizes {sizes}")
    with tempfile.TemporaryDirectory(prefix="ambience-scale-") as tmp:
        env = offline_env(Path(tmp), log)
        results = measure_all(env, photos, sizes, repeats, args.max_gib * 2**30, Path(tmp))
    text = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() + "\n\n" + markdown(results)
    if args.plots:
        plot_latency(results, args.plots / "latency_vs_size.png")
        text += f"\n\n![latency versus collection size]({args.plots_link}/latency_vs_size.png)"
    return text


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
