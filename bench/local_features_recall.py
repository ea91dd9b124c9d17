"""Rank-1 recall per copy transform on the real photographs (RootSIFT, exact index).

Every photo is indexed, then every photo is queried once per transform (crops of 50% and 25% of
the area, crop + JPEG q40, crop downscaled to half, 10-degree rotation, mirrored crop searched
with mirrored=1). A hit is rank 1 = the source or a byte-identical copy of its file
(tests.local_features.transforms.same_source_groups, the same rule as tests/local_features).

    python bench/local_features_recall.py [--every 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.collection import Collection
from services.common.schemas import SearchParams
from services.common.store import FeatureStore
from services.local_features.service import LocalFeatures, LocalFeaturesParams, LocalFeaturesSettings
from tests.helpers import PHOTOS, encode, load_rgb, photo_paths
from tests.local_features.transforms import TRANSFORMS, same_source_groups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=1, help="query every n-th photo")
    parser.add_argument("--descriptor", default="rootsift")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    paths = photo_paths(PHOTOS)
    if not paths:
        sys.exit(f"no photos at {PHOTOS}")
    tmp = Path(tempfile.mkdtemp(prefix="lf-recall-"))
    service = LocalFeatures(LocalFeaturesSettings(data_dir=tmp, descriptor=args.descriptor))
    service.load()
    store = FeatureStore(tmp, service.metadata())
    collection = Collection(store, service, tmp / "index.snapshot")
    collection.open()
    service.bind(collection)
    sources_of = same_source_groups(paths)
    images = [load_rgb(p) for p in paths]
    started = time.perf_counter()
    store.add_many((i, service.extract(encode(img, quality=95))) for i, img in enumerate(images))
    collection.sync()
    print(f"indexed {len(images)} photos in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    figures: dict[str, dict[str, object]] = {}
    for name, (fn, mirrored) in TRANSFORMS.items():
        hits, misses, seconds = 0, [], []
        queried = range(0, len(images), args.every)
        for i in queried:
            query = encode(fn(images[i], np.random.default_rng(i)), quality=95)
            t0 = time.perf_counter()
            result = service.search_by_image(query, SearchParams(k=3), LocalFeaturesParams(mirrored=mirrored))
            seconds.append(time.perf_counter() - t0)
            if result and result[0]["image_id"] in sources_of[i]:
                hits += 1
            else:
                misses.append(paths[i].name)
        figures[name] = {
            "hits": hits,
            "queries": len(queried),
            "rate": round(hits / len(queried), 3),
            "p50_ms": round(1000 * float(np.median(seconds)), 1),
            "misses": misses,
        }
        print(name, json.dumps(figures[name]), file=sys.stderr, flush=True)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
