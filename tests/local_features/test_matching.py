"""verify(): the per-query shortcuts (same-point mask built once, MAGSAC++ skipped when SMNN cannot
reach the inliers the caller keeps) change cost, never a result the caller would keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ambience_support.images import encode
from ambience_support.photos import load_rgb
from ambience_support.transforms import crop
from services.local_features.extraction import decode_record
from services.local_features.matching import same_point_mask, verify
from services.local_features.service import LocalFeatures, LocalFeaturesSettings


def test_shortcuts_keep_every_result_the_caller_keeps(photos: list[Path], tmp_path: Path) -> None:
    service = LocalFeatures(LocalFeaturesSettings(data_dir=tmp_path, descriptor="rootsift"))
    service.load()
    source, other = load_rgb(photos[0]), load_rgb(photos[1])
    stored = decode_record(service.extract(encode(source)))
    unrelated = decode_record(service.extract(encode(other)))
    query_img = crop(source, 0.5, np.random.default_rng(0)).convert("L")
    query = service.query_features(np.asarray(query_img, dtype=np.uint8))
    params = service.verify_params
    mask = same_point_mask(query.xy, params.same_point_radius)

    inliers = verify(query, stored, params, mask, needed=4)
    assert inliers >= service.settings.min_inliers  # a real crop of the stored photo
    assert verify(query, stored, params, None, needed=4) == inliers  # mask built inside: same result
    assert verify(query, stored, params, mask, needed=service.settings.min_inliers) == inliers
    # Fewer SMNN matches than needed: no homography could reach it, so the answer is 0.
    assert verify(query, stored, params, mask, needed=len(query) + 1) == 0
    assert (
        verify(query, unrelated, params, mask, needed=service.settings.min_inliers)
        < service.settings.min_inliers
    )
