"""open_feature(): a feature service without HTTP, on the same data the service uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ambience_support.images import encode, synthetic_image
from services.common.schemas import SearchParams
from services.phash.service import PhashFeature, PhashParams, PhashSettings, build_app
from services.registry import UnknownFeatureError, new_feature, open_feature


def test_headless_writes_are_what_the_service_serves(tmp_path: Path) -> None:
    data = {i: encode(synthetic_image(i, (160, 120))) for i in range(3)}
    with open_feature("phash", tmp_path / "phash") as opened:
        assert isinstance(opened.feature, PhashFeature)
        for image_id, image in data.items():
            assert opened.add(image_id, image)
        assert not opened.add(0, data[0])
        hits = opened.feature.search_by_image(data[2], SearchParams(k=1), PhashParams())
        assert hits == [{"image_id": 2, "distance": 0}]
    # The snapshot written on close is the one the service starts from.
    with TestClient(build_app(PhashSettings(data_dir=tmp_path / "phash"))) as client:
        stats = client.get("/stats").json()
        assert stats["count"] == 3
        assert stats["index"]["loaded_from"] == "snapshot"
        reply = client.post("/phash_get_similar_images_by_id", json={"image_id": 1, "k": 1})
        assert reply.json() == [{"image_id": 1, "distance": 0}]


def test_settings_override_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_PHASH_DECODE_SIZE", "512")
    assert new_feature("phash", tmp_path).settings.decode_size == 512  # type: ignore[attr-defined]
    feature = new_feature("phash", tmp_path, decode_size=128)
    assert feature.settings.decode_size == 128  # type: ignore[attr-defined]
    assert feature.settings.resolved_data_dir() == tmp_path


def test_services_without_a_feature_store_are_refused() -> None:
    with pytest.raises(UnknownFeatureError, match="unknown service 'nope'"):
        new_feature("nope")
    with pytest.raises(UnknownFeatureError, match="keeps no FeatureStore"):
        new_feature("ocr")
