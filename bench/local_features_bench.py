"""local_features trained index versus exhaustive verification.

Builds a collection of N images (the photos plus transformed copies of them: crops of 30-90% of
the area, rotations up to 25 degrees, half-size, mirrored, JPEG 50-95), extracting through the
service's own feature object (no HTTP) in worker processes, then measures:

- indexing throughput (decode + keypoints + descriptors, in ``--workers`` processes, plus the
  durable LMDB commit), images/s;
- bytes per image in LMDB (records and file size) and in the index (exact and trained);
- training time of the OPQ/IVF/PQ index (factory chosen by collection size unless given);
- query latency p50/p95 of the service's search (votes from the trained index, top
  ``max_candidates`` verified) against exhaustive SMNN + MAGSAC++ over every stored image, both
  measured in this run on the same queries (crops of 25% or 50% of the area of random photos,
  JPEG q75), and for both how often the top-1 is the right photo (the source or a copy of
  it) and the source itself is in the top 10.

Markdown on stdout, progress on stderr.

    python -m bench.local_features_bench [--images 1000] [--queries 20] [--small]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ambience_support.images import encode
from ambience_support.photos import PHOTOS, load_rgb, photo_paths, same_source_groups
from ambience_support.transforms import crop, half, jpeg, rotate
from services.common.schemas import SearchParams
from services.local_features.extraction import decode_record
from services.local_features.matching import same_point_mask, verify
from services.local_features.service import LocalFeatures, LocalFeaturesParams
from services.registry import new_feature, open_feature


def log(message: str) -> None:
    print(f"[local_features_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synthesise(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A distinct picture derived from a photo (another crop/rotation/scale of it)."""
    img = crop(photo, float(rng.uniform(0.3, 0.9)), rng)
    kind = rng.integers(0, 4)
    if kind == 0:
        img = rotate(img, float(rng.uniform(-25, 25)))
    elif kind == 1:
        img = half(img)
    elif kind == 2:
        img = ImageOps.mirror(img)
    return jpeg(img, int(rng.integers(50, 95)))


# -- extraction workers (one LocalFeatures + the photos per process) ------------------------------

_worker: dict[str, object] = {}


def _init_worker(paths: list[Path], descriptor: str, data_dir: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    service = new_feature("local_features", Path(data_dir), descriptor=descriptor)
    service.load()
    _worker["service"] = service
    _worker["photos"] = [load_rgb(p) for p in paths]


def _extract(image_id: int) -> tuple[int, bytes]:
    """Image ``image_id``: photo i for i < number of photos, else a synthetic copy seeded by id."""
    photos: list[Image.Image] = _worker["photos"]  # type: ignore[assignment]
    service: LocalFeatures = _worker["service"]  # type: ignore[assignment]
    photo = photos[image_id % len(photos)]
    img = photo if image_id < len(photos) else synthesise(photo, np.random.default_rng(image_id))
    return image_id, service.extract(encode(img, quality=92))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_features_bench")
    parser.add_argument("--images", type=int, help="collection size (default 1000; --small 40)")
    parser.add_argument("--queries", type=int, help="queries, each also run exhaustively (default 20)")
    parser.add_argument("--descriptor", default="rootsift", choices=["rootsift", "hardnet8"])
    parser.add_argument("--factory", default="", help="FAISS factory (default: auto by size)")
    parser.add_argument("--workers", type=int, help="extraction processes (default: one per core; --small 1)")
    parser.add_argument("--small", action="store_true", help="a quick smoke run (16 images, 2 queries)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n_images = args.images or (16 if args.small else 1000)
    n_queries = args.queries or (2 if args.small else 20)
    # Small: a factory that trains in a blink on a few thousand descriptors.
    factory = args.factory or ("IVF16,SQ8" if args.small else "")
    args.workers = args.workers or (1 if args.small else os.cpu_count() or 1)

    paths = photo_paths(PHOTOS)
    if not paths:
        sys.exit(f"no photos at {PHOTOS}")
    if args.small:
        paths = paths[:8]
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-"))
    opened = open_feature("local_features", tmp, descriptor=args.descriptor, index_factory=factory)
    service, store, collection = opened.feature, opened.store, opened.collection
    assert isinstance(service, LocalFeatures)
    settings = service.settings

    # -- indexing -----------------------------------------------------------------------------------
    log(f"extracting {n_images} images in {args.workers} processes")
    started = time.perf_counter()
    record_bytes = 0
    batch: list[tuple[int, bytes]] = []
    if args.workers > 1:
        pool = ProcessPoolExecutor(
            args.workers, initializer=_init_worker, initargs=(paths, args.descriptor, str(tmp))
        )
        results = pool.map(_extract, range(n_images), chunksize=8)
    else:
        pool = None
        _init_worker(paths, args.descriptor, str(tmp))
        results = map(_extract, range(n_images))
    for done, (image_id, record) in enumerate(results, 1):
        record_bytes += len(record)
        batch.append((image_id, record))
        if len(batch) == 64 or done == n_images:
            store.add_many(batch)
            batch = []
        if done % 500 == 0:
            log(f"indexed {done}/{n_images} ({done / (time.perf_counter() - started):.1f} images/s)")
    if pool is not None:
        pool.shutdown()
    index_seconds = time.perf_counter() - started
    collection.sync()
    flat_bytes = len(collection.index.serialize())
    descriptors = collection.index.count()

    # -- training -------------------------------------------------------------------------------------
    log(f"training on {descriptors} descriptors")
    started = time.perf_counter()
    trained = service.train()
    train_seconds = time.perf_counter() - started
    trained_bytes = len(collection.index.serialize())
    log(f"trained {trained['factory']} in {train_seconds:.1f}s")

    # -- queries ----------------------------------------------------------------------------------------
    photos = [load_rgb(p) for p in paths]
    twins = same_source_groups(paths)  # byte-identical photo files count as the same photo

    def photo_of(image_id: int) -> set[int]:
        return twins[image_id % len(paths)]  # extras are copies of photo id % number of photos

    stored = [(i, decode_record(store.get(i))) for i in store.ids()]  # type: ignore[arg-type]
    qrng = np.random.default_rng(1)
    search = SearchParams(k=10)
    needed = settings.min_inliers
    fast_ms: list[float] = []
    exhaustive_ms: list[float] = []
    right = {"fast": 0, "exhaustive": 0}  # top-1 is the source photo or a copy of it
    top10 = {"fast": 0, "exhaustive": 0}  # the source photo itself is in the top 10
    agree = 0
    for q in range(n_queries):
        source = int(qrng.integers(0, len(photos)))
        query_img = jpeg(crop(photos[source], float(qrng.choice([0.25, 0.5])), qrng), 75)
        data = encode(query_img, quality=95)
        t0 = time.perf_counter()
        fast = [hit["image_id"] for hit in service.search_by_image(data, search, LocalFeaturesParams())]
        fast_ms.append(1000 * (time.perf_counter() - t0))
        # Exhaustive: the same query features verified against every stored image, same verify().
        t0 = time.perf_counter()
        query = service.query_features(np.asarray(Image.open(io.BytesIO(data)).convert("L")))
        same_point = same_point_mask(query.xy, service.verify_params.same_point_radius)
        scores = [
            (verify(query, features, service.verify_params, same_point, needed), image_id)
            for image_id, features in stored
        ]
        ranked = [i for n, i in sorted(scores, key=lambda s: (-s[0], s[1])) if n >= needed][:10]
        exhaustive_ms.append(1000 * (time.perf_counter() - t0))
        for name, result in (("fast", fast), ("exhaustive", ranked)):
            right[name] += bool(result) and result[0] % len(paths) in photo_of(source)
            top10[name] += any(i in twins[source] for i in result)
        agree += fast[:1] == ranked[:1]
        log(f"query {q + 1}/{n_queries}: fast {fast_ms[-1]:.0f} ms, exhaustive {exhaustive_ms[-1]:.0f} ms")

    speedup = percentile(exhaustive_ms, 50) / percentile(fast_ms, 50)
    relative = right["fast"] / right["exhaustive"] if right["exhaustive"] else float("nan")
    n = n_queries
    print(
        f"{'Small smoke run: ' if args.small else ''}{n_images:,} images ({len(paths)} photos + "
        f"{n_images - len(paths):,} transformed copies of them), {args.descriptor} descriptors, "
        f"{settings.max_keypoints} stored keypoints per image; {n} queries (crops of 25% or 50% of the area "
        "of random photos, JPEG q75), each searched by the service (trained index, "
        f"{settings.max_candidates} candidates verified) and exhaustively (SMNN + MAGSAC++ against every "
        "stored image, the same `verify()`), one after the other in this process.\n"
    )
    print("| measure | value |\n|---|---|")
    rows = [
        ("images in the collection", f"{n_images:,}"),
        ("descriptors stored", f"{descriptors:,}"),
        (
            f"indexing throughput (decode + SIFT + {args.descriptor}, {args.workers} processes, LMDB commit)",
            f"{n_images / index_seconds:.1f} images/s",
        ),
        ("LMDB record bytes per image (avg)", f"{record_bytes / n_images:,.0f}"),
        ("LMDB file bytes per image (incl. B-tree and log)", f"{store.disk_bytes() / n_images:,.0f}"),
        ("exact index bytes per image (IndexFlatL2 + ids)", f"{flat_bytes / n_images:,.0f}"),
        (
            f"trained index bytes per image ({trained['factory']}, nprobe {settings.nprobe})",
            f"{trained_bytes / n_images:,.0f}",
        ),
        ("training time", f"{train_seconds:.1f} s"),
        (
            "query latency, trained index + verification, p50 / p95",
            f"{percentile(fast_ms, 50):.0f} / {percentile(fast_ms, 95):.0f} ms",
        ),
        (
            "query latency, exhaustive SMNN + MAGSAC++ over all, p50 / p95",
            f"{percentile(exhaustive_ms, 50):.0f} / {percentile(exhaustive_ms, 95):.0f} ms",
        ),
        ("speed-up (p50)", f"{speedup:.1f}x"),
        (
            "top-1 is the source photo or a copy of it: trained index / exhaustive",
            f"{right['fast']}/{n} / {right['exhaustive']}/{n}",
        ),
        (
            "source photo itself in the top 10: trained index / exhaustive",
            f"{top10['fast']}/{n} / {top10['exhaustive']}/{n}",
        ),
        ("recall@1 relative to exhaustive", f"{relative:.2f}"),
        ("top-1 agreement with exhaustive", f"{agree}/{n}"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        f"\nThe trained index answers a query {speedup:.1f}x faster than verifying every stored image "
        f"(p50), with {relative:.0%} of the exhaustive recall@1; its top-1 is the "
        f"exhaustive top-1 for {agree} of {n} queries. The index takes "
        f"{flat_bytes / max(trained_bytes, 1):.1f}x less memory than the exact one."
    )


if __name__ == "__main__":
    main()
