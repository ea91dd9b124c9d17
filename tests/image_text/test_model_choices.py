"""The image_text rows of docs/models.md build through the service's own loading code (random weights).

MobileCLIP uses open_clip's own tokenizer and builds whole, through the app. ViT-B-16-SigLIP2's
image tower builds here (its tokenizer path is tested on a tiny config in test_siglip2.py). The
multilingual XLM-RoBERTa tower takes its tokenizer and text config from the HF hub through
``transformers``: the whole service only where ``transformers`` and the hub files are there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from ambience_support.images import encode, synthetic_image
from services.common.models.open_clip_loader import load_open_clip_model
from services.common.models.weights import ResolvedWeights
from services.image_text.service import build_app
from services.image_text.settings import ImageTextSettings

#: Left out of day-to-day runs (pytest -m "not slow"): the model choices built.
pytestmark = pytest.mark.slow

RANDOM = ResolvedWeights("random", None, "random-seed0", "random")


@pytest.fixture(autouse=True)
def random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")


def hub_tokenizer_available(model: str) -> bool:
    try:
        import open_clip

        open_clip.get_tokenizer(model)
    except Exception:  # no transformers, or the tokenizer files are not reachable offline
        return False
    return True


@pytest.mark.slow  # builds a full MobileCLIP (two towers) with random weights
def test_mobileclip_builds_and_searches_by_text(tmp_path: Path) -> None:
    settings = ImageTextSettings(data_dir=tmp_path, model="MobileCLIP-S1", weights="random")
    with TestClient(build_app(settings)) as client:
        assert client.get("/health").json()["dim"] == 512
        r = client.post(
            "/calculate_image_text_features",
            files={"image": ("a.jpg", encode(synthetic_image(0)))},
            data={"image_id": "0"},
        )
        assert r.status_code == 200, r.text
        r = client.post("/image_text_features_get_similar_images_by_text", json={"text": "a dog", "k": 1})
        assert r.status_code == 200 and r.json()[0]["image_id"] == 0


def test_siglip2_image_tower_builds() -> None:
    net = load_open_clip_model("ViT-B-16-SigLIP2", RANDOM)
    size = net.visual.preprocess_cfg["size"]
    side = size if isinstance(size, int) else size[0]
    with torch.inference_mode():
        out = net.encode_image(torch.zeros(1, 3, side, side), normalize=True)
    assert out.shape == (1, 768) and np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("model", ["xlm-roberta-base-ViT-B-32"])
def test_hub_tokenizer_models_build_whole_where_the_tokenizer_is_reachable(
    tmp_path: Path, model: str
) -> None:
    if not hub_tokenizer_available(model):
        pytest.skip(f"{model}: its tokenizer needs transformers and HF hub files, not reachable here")
    settings = ImageTextSettings(data_dir=tmp_path, model=model, weights="random")
    with TestClient(build_app(settings)) as client:
        assert client.get("/health").json()["dim"] > 0
