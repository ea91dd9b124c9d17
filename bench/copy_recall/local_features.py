"""local_features rank-1 recall per copy transform on the real photos.

Every photo is indexed (RootSIFT unless ``--descriptor``, exact index, default settings), then
every photo (``--every N``: every n-th) is queried once per transform of
``ambience_support.transforms.LOCAL_FEATURES_COPIES`` (crops of 50% and 25% of the area, crop + JPEG
q40, crop downscaled to half, 10-degree rotation, mirrored crop searched with mirrored=1). A hit is
rank 1 = the source or a byte-identical copy of its file (:class:`Ranks`, the rule of
tests/local_features/test_recall.py as well). ``--small``: 4 photos, 2 transforms.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from ambience_support.images import encode
from ambience_support.photos import PHOTOS, load_rgb, photo_paths
from ambience_support.transforms import LOCAL_FEATURES_COPIES
from bench.copy_recall.ranks import Ranks
from bench.harness import progress, small_note
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
SMALL_TRANSFORMS = ("crop50", "mirrored_crop50")
METHOD = "local_features"
log = progress("copy_recall local_features")


def run(args: argparse.Namespace) -> str:
    logging.basicConfig(level=logging.WARNING)
    paths = photo_paths(PHOTOS, args.max_photos or (4 if args.small else None))
    if not paths:
        raise SystemExit(f"no photos at {PHOTOS}")
    names = (
        args.transforms.split(",") if args.transforms else (SMALL_TRANSFORMS if args.small else DESCRIPTIONS)
    )
    transforms = {name: LOCAL_FEATURES_COPIES[name] for name in names}
    every = args.every or 1
    opened = open_feature(
        "local_features", Path(tempfile.mkdtemp(prefix="lf-recall-")), descriptor=args.descriptor
    )
    service, store, collection = opened.feature, opened.store, opened.collection
    assert isinstance(service, LocalFeatures)
    settings = service.settings
    images = [load_rgb(p) for p in paths]
    started = time.perf_counter()
    store.add_many((i, service.extract(encode(img, quality=95))) for i, img in enumerate(images))
    collection.sync()
    index_seconds = time.perf_counter() - started
    log(f"indexed {len(images)} photos in {index_seconds:.1f}s")

    ranks = Ranks.of(paths)
    queried = range(0, len(images), every)
    p50_ms: dict[str, float] = {}
    misses: dict[str, list[str]] = {}
    for name, (transform, mirrored) in transforms.items():
        seconds = []
        for i in queried:
            query = encode(transform(images[i], np.random.default_rng(i)), quality=95)
            t0 = time.perf_counter()
            result = service.search_by_image(query, SearchParams(k=3), LocalFeaturesParams(mirrored=mirrored))
            seconds.append(time.perf_counter() - t0)
            if ranks.add_hits(METHOD, name, i, [hit["image_id"] for hit in result]) != 0:
                misses.setdefault(name, []).append(paths[i].stem)
        p50_ms[name] = 1000 * float(np.median(seconds))
        log(f"{name}: recall@1 {ranks.recall(METHOD, name, 1):.2f}")
    opened.close(snapshot=False)

    out = [
        (small_note(f"{len(images)} photos, {len(transforms)} transforms") if args.small else "")
        + f"{len(images)} photos indexed ({args.descriptor}, exact index, {settings.max_keypoints} stored "
        f"keypoints, max side {settings.max_side} px; {len(images) / index_seconds:.1f} photos/s in one "
        f"process), {'every photo' if every == 1 else f'one photo in {every}'} queried once per "
        "transform with the default "
        f"settings ({settings.query_octaves}-level query pyramid, {settings.query_keypoints} keypoints per "
        f"level, {settings.max_candidates} candidates verified, >= {settings.min_inliers} MAGSAC++ "
        "inliers). **Hit = rank 1 is the source photo or a byte-identical copy of its file.** Query "
        "latency includes decoding and keypoint extraction of the query, in this process.\n",
        "| transform | rank-1 hits | recall@1 | query p50 | misses |\n|---|---|---|---|---|",
    ]
    total = len(queried)
    for name in transforms:
        recall = ranks.recall(METHOD, name, 1)
        missed = ", ".join(misses.get(name, [])) or "none"
        out.append(
            f"| {DESCRIPTIONS[name]} | {round(recall * total)}/{total} | {recall:.1%} "
            f"| {p50_ms[name]:.0f} ms "
            f"| {missed} |"
        )
    worst = min(transforms, key=lambda name: ranks.recall(METHOD, name, 1))
    always = set.intersection(*(set(misses.get(name, [])) for name in transforms))
    out.append(
        f"\nLowest recall@1: {DESCRIPTIONS[worst]}, {ranks.recall(METHOD, worst, 1):.1%}. Photos missed "
        f"under every transform: {', '.join(sorted(always)) or 'none'}."
    )
    return "\n".join(out)
