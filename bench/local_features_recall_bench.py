"""local_features rank-1 recall per copy transform on the real photos.

Every photo is indexed (RootSIFT unless ``--descriptor``, exact index, default settings), then
every photo is queried once per transform (crops of 50% and 25% of the area, crop + JPEG q40, crop
downscaled to half, 10-degree rotation, mirrored crop searched with mirrored=1). A hit is rank 1 =
the source or a byte-identical copy of its file (``ambience_support.photos.
same_source_groups``, the rule of tests/local_features/test_recall.py as well).

Markdown on stdout, progress on stderr.

    python -m bench.local_features_recall_bench [--every 1] [--small]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ambience_support.images import encode
from ambience_support.photos import PHOTOS, load_rgb, photo_paths, same_source_groups
from ambience_support.transforms import LOCAL_FEATURES_COPIES
from services.common.schemas import SearchParams
from services.local_features.service import LocalFeatures, LocalFeaturesParams
from services.registry import open_feature

DESCRIPTIONS = {
    "crop50": "crop, 50% of the area",
    "crop25": "crop, 25% of the area",
    "crop50_jpeg40": "50% crop + JPEG q40",
    "crop50_half": "50% crop downscaled to half",
    "rotate10": "10-degree rotation (whole photo)",
    "mirrored_crop50": "mirrored 50% crop, `mirrored=1`",
}


def log(message: str) -> None:
    print(f"[local_features_recall_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_features_recall_bench")
    parser.add_argument("--every", type=int, default=1, help="query every n-th photo")
    parser.add_argument("--descriptor", default="rootsift", choices=["rootsift", "hardnet8"])
    parser.add_argument("--small", action="store_true", help="a quick smoke run (4 photos, 2 transforms)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    paths = photo_paths(PHOTOS)
    if not paths:
        sys.exit(f"no photos at {PHOTOS}")
    transforms = dict(LOCAL_FEATURES_COPIES)
    if args.small:
        paths = paths[:4]
        transforms = {name: LOCAL_FEATURES_COPIES[name] for name in ("crop50", "mirrored_crop50")}
    tmp = Path(tempfile.mkdtemp(prefix="lf-recall-"))
    opened = open_feature("local_features", tmp, descriptor=args.descriptor)
    service, store, collection = opened.feature, opened.store, opened.collection
    assert isinstance(service, LocalFeatures)
    settings = service.settings
    sources_of = same_source_groups(paths)
    images = [load_rgb(p) for p in paths]
    started = time.perf_counter()
    store.add_many((i, service.extract(encode(img, quality=95))) for i, img in enumerate(images))
    collection.sync()
    index_seconds = time.perf_counter() - started
    log(f"indexed {len(images)} photos in {index_seconds:.1f}s")

    queried = range(0, len(images), args.every)
    rows = []
    for name, (transform, mirrored) in transforms.items():
        hits, misses, seconds = 0, [], []
        for i in queried:
            query = encode(transform(images[i], np.random.default_rng(i)), quality=95)
            t0 = time.perf_counter()
            result = service.search_by_image(query, SearchParams(k=3), LocalFeaturesParams(mirrored=mirrored))
            seconds.append(time.perf_counter() - t0)
            if result and result[0]["image_id"] in sources_of[i]:
                hits += 1
            else:
                misses.append(paths[i].stem)
        rows.append((name, hits, len(queried), 1000 * float(np.median(seconds)), misses))
        log(f"{name}: {hits}/{len(queried)}")

    print(
        f"{'Small smoke run: ' if args.small else ''}{len(images)} photos indexed ({args.descriptor}, exact "
        f"index, {settings.max_keypoints} stored keypoints, max side {settings.max_side} px; "
        f"{len(images) / index_seconds:.1f} photos/s in one process), "
        f"{'every photo' if args.every == 1 else f'one photo in {args.every}'} queried once per "
        "transform with the default "
        f"settings ({settings.query_octaves}-level query pyramid, {settings.query_keypoints} keypoints per "
        f"level, {settings.max_candidates} candidates verified, >= {settings.min_inliers} MAGSAC++ "
        "inliers). **Hit = rank 1 is the source photo or a byte-identical copy of its file.** Query "
        "latency includes decoding and keypoint extraction of the query, in this process.\n"
    )
    print("| transform | rank-1 hits | recall@1 | query p50 | misses |\n|---|---|---|---|---|")
    for name, hits, total, p50, misses in rows:
        print(
            f"| {DESCRIPTIONS[name]} | {hits}/{total} | {hits / total:.1%} | {p50:.0f} ms | "
            f"{', '.join(misses) or 'none'} |"
        )
    worst = min(rows, key=lambda row: row[1] / row[2])
    print(
        f"\nLowest recall@1: {DESCRIPTIONS[worst[0]]}, {worst[1] / worst[2]:.1%}. Photos missed under "
        f"every transform: {', '.join(sorted(set.intersection(*(set(r[4]) for r in rows)))) or 'none'}."
    )


if __name__ == "__main__":
    main()
