"""local_features benchmark: trained-index search vs exhaustive SMNN + MAGSAC++ verification.

Builds a collection of N images (the photos plus transformed copies of them: crops, rotations,
rescales, JPEG re-encodes), extracting through the algorithm module (no HTTP), then:

- indexing throughput (decode + keypoints + descriptors + durable LMDB commit), images/s;
- bytes per image in LMDB (records and file size) and in the index (exact and trained);
- query latency p50/p95 of the service's search (votes from the trained index, top
  max_candidates verified) against exhaustive SMNN + MAGSAC++ over every stored image, both
  measured in this run on the same queries (crops of 25-50% area of random photos, JPEG q75);
- recall@1 of the true source for both, and agreement of the fast top-1 with the exhaustive one.

    python bench/local_features_bench.py --images 10000 --queries 50
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.collection import Collection
from services.common.schemas import SearchParams
from services.common.store import FeatureStore
from services.local_features import indexing
from services.local_features.extraction import decode_record
from services.local_features.matching import verify
from services.local_features.service import LocalFeatures, LocalFeaturesParams, LocalFeaturesSettings
from tests.helpers import PHOTOS, encode, load_rgb, photo_paths
from tests.local_features.transforms import crop, half, jpeg, rotate


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


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--descriptor", default="rootsift", choices=["rootsift", "hardnet8"])
    parser.add_argument("--factory", default="", help="FAISS factory (default: auto by size)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    photos = [load_rgb(p) for p in photo_paths(PHOTOS)]
    if not photos:
        sys.exit(f"no photos at {PHOTOS}")
    photos = [p if max(p.size) <= 1600 else p.resize((p.width // 2, p.height // 2)) for p in photos]
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-"))
    settings = LocalFeaturesSettings(data_dir=tmp, descriptor=args.descriptor, index_factory=args.factory)
    service = LocalFeatures(settings)
    service.load()
    store = FeatureStore(tmp, service.metadata())
    collection = Collection(store, service, tmp / "index.snapshot")
    collection.open()
    service.bind(collection)

    # -- indexing ---------------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    batch: list[tuple[int, bytes]] = []
    record_bytes = 0
    for image_id in range(args.images):
        photo = photos[image_id % len(photos)]
        img = photo if image_id < len(photos) else synthesise(photo, rng)
        record = service.extract(encode(img, quality=92))
        record_bytes += len(record)
        batch.append((image_id, record))
        if len(batch) == 64 or image_id == args.images - 1:
            store.add_many(batch)
            batch = []
        if image_id % 500 == 499:
            rate = (image_id + 1) / (time.perf_counter() - started)
            print(f"indexed {image_id + 1}/{args.images} ({rate:.2f} images/s)", file=sys.stderr, flush=True)
    index_seconds = time.perf_counter() - started
    collection.sync()
    flat_bytes = len(collection.index.serialize())
    descriptors = collection.index.count()

    # -- training -----------------------------------------------------------------------------------------
    started = time.perf_counter()
    trained = service.train()
    train_seconds = time.perf_counter() - started
    trained_bytes = len(collection.index.serialize())

    # -- queries --------------------------------------------------------------------------------------------
    qrng = np.random.default_rng(1)
    search = SearchParams(k=10)
    fast_ms, exhaustive_ms, fast_hits, exhaustive_hits, agree = [], [], 0, 0, 0
    stored = [(i, decode_record(store.get(i))) for i in store.ids()]  # type: ignore[arg-type]
    for q in range(args.queries):
        source = int(qrng.integers(0, len(photos)))
        query_img = jpeg(crop(photos[source], float(qrng.choice([0.25, 0.5])), qrng), 75)
        data = encode(query_img, quality=95)
        t0 = time.perf_counter()
        fast = service.search_by_image(data, search, LocalFeaturesParams())
        fast_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        query = service.query_features(gray)
        scores = [(verify(query, features, service.verify_params), image_id) for image_id, features in stored]
        best = max(scores, key=lambda s: (s[0], -s[1]))
        exhaustive_ms.append(1000 * (time.perf_counter() - t0))
        # A copy of the source (the synthesised extras) shares its picture; the ground truth is
        # the source photo itself, a hit counts when rank 1 is the source.
        fast_top = fast[0]["image_id"] if fast else None
        exhaustive_top = best[1] if best[0] >= settings.min_inliers else None
        fast_hits += fast_top == source
        exhaustive_hits += exhaustive_top == source
        agree += fast_top == exhaustive_top
        print(
            f"query {q + 1}/{args.queries}: fast {fast_ms[-1]:.0f} ms, exhaustive {exhaustive_ms[-1]:.0f} ms",
            file=sys.stderr,
            flush=True,
        )

    n = args.queries
    figures = {
        "images": args.images,
        "descriptor": args.descriptor,
        "descriptors": descriptors,
        "indexing_images_per_s": round(args.images / index_seconds, 2),
        "lmdb_record_bytes_per_image": round(record_bytes / args.images),
        "lmdb_file_bytes_per_image": round(store.disk_bytes() / args.images),
        "flat_index_bytes_per_image": round(flat_bytes / args.images),
        "trained_index_bytes_per_image": round(trained_bytes / args.images),
        "factory": trained["factory"],
        "nprobe": settings.nprobe,
        "train_seconds": round(train_seconds, 1),
        "queries": n,
        "fast_p50_ms": round(percentile(fast_ms, 50), 1),
        "fast_p95_ms": round(percentile(fast_ms, 95), 1),
        "exhaustive_p50_ms": round(percentile(exhaustive_ms, 50), 1),
        "exhaustive_p95_ms": round(percentile(exhaustive_ms, 95), 1),
        "speedup_p50": round(percentile(exhaustive_ms, 50) / percentile(fast_ms, 50), 1),
        "fast_recall_at_1": round(fast_hits / n, 3),
        "exhaustive_recall_at_1": round(exhaustive_hits / n, 3),
        "recall_relative_to_exhaustive": round(fast_hits / max(exhaustive_hits, 1), 3),
        "top1_agreement_with_exhaustive": round(agree / n, 3),
        "auto_factory_for_10M_descriptors": indexing.auto_factory(10_000_000),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
