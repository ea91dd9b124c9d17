"""Recall on the real photographs with RootSIFT: every transform finds its source at rank 1.

All photos are indexed (they are each other's distractors); every 4th photo is queried with each
transform to keep the test near a minute of CPU. Rank 1 must be the source or a byte-identical
copy of its file (same_source_groups; the bench counts the same way). The full-collection
figures come from ``python -m bench.copy_recall_bench --parts local_features`` (every photo), recorded
in docs/benchmarks.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ambience_support.images import encode
from ambience_support.photos import load_rgb, same_source_groups
from ambience_support.transforms import LOCAL_FEATURES_COPIES
from services.common.schemas import SearchParams
from services.local_features.service import LocalFeatures, LocalFeaturesParams
from services.registry import open_feature

#: Left out of day-to-day runs (pytest -m "not slow"): SIFT over the copy transforms of the photos.
pytestmark = pytest.mark.slow

QUERY_EVERY = 4


@pytest.fixture(scope="module")
def indexed(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalFeatures, list]:
    tmp = tmp_path_factory.mktemp("lf-recall")
    opened = open_feature("local_features", tmp, descriptor="rootsift")
    service, store, collection = opened.feature, opened.store, opened.collection
    assert isinstance(service, LocalFeatures)
    images = [load_rgb(p) for p in photos]
    store.add_many((i, service.extract(encode(img, quality=95))) for i, img in enumerate(images))
    collection.sync()
    same = same_source_groups(photos)
    yield service, list(zip(images, same, strict=True))
    opened.close(snapshot=False)


@pytest.mark.parametrize("transform", list(LOCAL_FEATURES_COPIES))
def test_transform_finds_source_at_rank_1(indexed: tuple[LocalFeatures, list], transform: str) -> None:
    service, items = indexed
    fn, mirrored = LOCAL_FEATURES_COPIES[transform]
    queried = hits = 0
    for i in range(0, len(items), QUERY_EVERY):
        img, sources = items[i]
        query = encode(fn(img, np.random.default_rng(i)), quality=95)
        result = service.search_by_image(query, SearchParams(k=3), LocalFeaturesParams(mirrored=mirrored))
        queried += 1
        hits += bool(result) and result[0]["image_id"] in sources
    assert hits / queried >= 0.9, f"{transform}: {hits}/{queried}"
