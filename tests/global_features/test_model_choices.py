"""The global_features rows of docs/models.md build through the service's own loading code (random
weights), and the ViT pooling options give what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from ambience_support.images import encode, synthetic_image
from services.common.errors import StartupError
from services.common.models.weights import ResolvedWeights
from services.global_features.model import TimmSession
from services.global_features.service import build_app
from services.global_features.settings import GlobalFeaturesSettings

#: Left out of day-to-day runs (pytest -m "not slow"): the model choices built and exported.
pytestmark = pytest.mark.slow

RANDOM = ResolvedWeights("random", None, "random-seed0", "random")


@pytest.fixture(autouse=True)
def random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")


@pytest.mark.slow  # a ViT-S at 518 px, twice: tens of seconds on two cores
@pytest.mark.parametrize(("pooling", "dim"), [("model", 384), ("token_avg", 768)])
def test_dinov2_small_builds_and_searches(tmp_path: Path, pooling: str, dim: int) -> None:
    settings = GlobalFeaturesSettings(
        data_dir=tmp_path, model="vit_small_patch14_dinov2", weights="random", pooling=pooling
    )
    with TestClient(build_app(settings)) as client:
        health = client.get("/health").json()
        assert health["dim"] == dim
        for i in range(2):
            r = client.post(
                "/calculate_global_features",
                files={"image": ("a.jpg", encode(synthetic_image(i)))},
                data={"image_id": str(i)},
            )
            assert r.status_code == 200, r.text
        hits = client.post("/global_features_get_similar_images_by_id", json={"image_id": 1, "k": 2}).json()
        assert [h["image_id"] for h in hits] == [1, 0]


def test_pooling_options_read_the_vit_tokens() -> None:
    sessions = {
        p: TimmSession("test_vit", RANDOM, torch.device("cpu"), pooling=p)
        for p in ("token", "avg", "token_avg")
    }
    pixels = np.stack([sessions["token"].preprocess(synthetic_image(i)) for i in range(2)])
    out = {p: s.embed_images(pixels) for p, s in sessions.items()}
    width = out["token"].shape[1]
    assert out["token_avg"].shape[1] == 2 * width
    np.testing.assert_allclose(
        out["token_avg"], np.hstack([out["token"], out["avg"]]) / np.sqrt(2), atol=1e-5
    )
    assert not np.allclose(out["token"], out["avg"], atol=1e-3)
    # Each pooling is a different model identity, so a store built with one refuses another.
    assert len({s.model_id for s in sessions.values()}) == 3


def test_token_pooling_needs_a_class_token() -> None:
    with pytest.raises(StartupError, match="needs a ViT with a class token"):
        TimmSession("test_efficientnet", RANDOM, torch.device("cpu"), pooling="token")
