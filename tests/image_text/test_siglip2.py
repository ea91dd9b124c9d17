"""image_text with a SigLIP 2 style model (a tiny config of the same family, random weights): its HF
tokenizer read from a local folder (generated here, offline), the text tower loaded on the first
text query and released when idle, towers loaded alone from a safetensors checkpoint, and the
tokenizer fetched into the models dir by ``ambience models fetch`` then used offline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from ambience.cli import main
from ambience_support.images import encode, synthetic_image
from ambience_support.tiny_tokenizer import write_tokenizer
from ambience_support.weights_server import WeightsServer
from services.common.errors import StoreMismatchError, WeightsMissingError
from services.common.models.open_clip_loader import (
    load_open_clip_model,
    load_open_clip_tower,
    register_model_configs,
    tokenizer_folder,
)
from services.common.models.weights import ResolvedWeights, sha256_file
from services.image_text.service import build_app
from services.image_text.settings import ImageTextSettings

#: Left out of day-to-day runs (pytest -m "not slow"): SigLIP 2 built at full size.
pytestmark = pytest.mark.slow

TINY_SIGLIP2 = Path(__file__).parents[1] / "models" / "tiny-siglip2.json"
TOKENIZER_NAME = "ambience-test/tiny-siglip2"
TINY = {"model": "tiny-siglip2", "weights": "random", "model_config_path": str(TINY_SIGLIP2)}
RANDOM = ResolvedWeights("random", None, "random-seed0", "random")


@pytest.fixture(autouse=True)
def random_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    monkeypatch.setenv("AMBIENCE_DOWNLOAD_MODELS", "0")
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path / "models"))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer(tmp_path_factory.mktemp("tok") / "tiny")


def client_for(data_dir: Path, **overrides: Any) -> TestClient:
    return TestClient(build_app(ImageTextSettings(data_dir=data_dir, **{**TINY, **overrides})))


def add(client: TestClient, image_id: int) -> None:
    r = client.post(
        "/calculate_image_text_features",
        data={"image_id": str(image_id)},
        files={"image": ("a.jpg", encode(synthetic_image(image_id)))},
    )
    assert r.status_code == 200, r.text


def test_tokenizer_cleans_truncates_and_pads(tmp_path: Path, tokenizer_dir: Path) -> None:
    with client_for(tmp_path / "it", tokenizer=str(tokenizer_dir)) as client:
        session = client.app.state.service.session  # type: ignore[attr-defined]
        assert session.context_length == 16
        ids = session.tokenize("A photo of a DOG!")
        assert ids.tolist() == [3, 13, 14, 3, 4] + [0] * 11  # canonicalised: case and punctuation go
        assert session.tokenize("   a   photo of a dog ").tolist() == ids.tolist()
        long = session.tokenize("a red car " * 20)
        assert long.shape == (16,) and (long != 0).all()  # cut to the context, no padding left


def test_text_tower_loads_on_the_first_text_query_and_is_released_when_idle(
    tmp_path: Path, tokenizer_dir: Path
) -> None:
    with client_for(tmp_path / "it", tokenizer=str(tokenizer_dir), text_idle_s=0.3) as client:
        feature = client.app.state.service  # type: ignore[attr-defined]
        for i in range(3):
            add(client, i)
        assert client.get("/health").json()["text_tower_loaded"] is False  # indexing never needs it
        first = client.post("/image_text_features_get_similar_images_by_text", json={"text": "a dog", "k": 3})
        assert first.status_code == 200 and len(first.json()) == 3
        assert client.get("/health").json()["text_tower_loaded"] is True
        vector = feature.embed_text("a dog")
        deadline = time.monotonic() + 10
        while feature.session.text.loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not feature.session.text.loaded, "the idle text tower was not released"
        again = client.post("/image_text_features_get_similar_images_by_text", json={"text": "a dog", "k": 3})
        assert again.json() == first.json()  # reloaded: the same (seeded) tower
        assert np.allclose(feature.embed_text("a dog"), vector, atol=1e-6)
        assert feature.session.text.loads == 2


def test_a_missing_tokenizer_stops_the_service_with_the_fix(tmp_path: Path) -> None:
    settings = ImageTextSettings(data_dir=tmp_path / "it", **TINY)
    with (
        pytest.raises(WeightsMissingError, match="ambience models fetch image_text"),
        TestClient(build_app(settings)),
    ):
        pass
    absent = ImageTextSettings(data_dir=tmp_path / "it2", tokenizer=str(tmp_path / "nowhere"), **TINY)
    with (
        pytest.raises(WeightsMissingError, match="AMBIENCE_IMAGE_TEXT_TOKENIZER"),
        TestClient(build_app(absent)),
    ):
        pass


def test_vectors_of_another_model_are_refused(tmp_path: Path, tokenizer_dir: Path) -> None:
    with client_for(tmp_path / "it", tokenizer=str(tokenizer_dir)) as client:
        add(client, 1)
    tiny_clip = Path(__file__).parents[1] / "models" / "tiny-clip.json"
    other = ImageTextSettings(
        data_dir=tmp_path / "it", model="tiny-clip", weights="random", model_config_path=str(tiny_clip)
    )
    refused = "model: stored 'tiny-siglip2', configured 'tiny-clip'"
    with pytest.raises(StoreMismatchError, match=refused), TestClient(build_app(other)):
        pass


def test_towers_load_alone_from_a_safetensors_checkpoint(tmp_path: Path) -> None:
    """Only the tower's own tensors are read, and they give the whole model's outputs."""
    from safetensors.torch import save_file

    register_model_configs("image_text", str(TINY_SIGLIP2))
    whole = load_open_clip_model("tiny-siglip2", RANDOM)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in whole.state_dict().items()}, str(path))
    weights = ResolvedWeights("file", path, sha256_file(path), str(path))
    visual = load_open_clip_tower("tiny-siglip2", weights, "visual")
    text = load_open_clip_tower("tiny-siglip2", weights, "text")
    assert isinstance(visual, torch.nn.Module) and not hasattr(text, "visual")
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    with torch.inference_mode():
        assert torch.allclose(visual(pixels), whole.visual(pixels), atol=1e-6)
        assert torch.allclose(text.encode_text(tokens), whole.encode_text(tokens), atol=1e-6)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path) -> Iterator[WeightsServer]:
    """A local stand-in for the HF hub serving the tiny tokenizer's files."""
    files = {
        name: (tokenizer_dir / name).read_bytes() for name in ("tokenizer.json", "tokenizer_config.json")
    }
    with WeightsServer(files=files) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.base_url + "/files")
        yield server


def test_models_fetch_keeps_the_tokenizer_and_the_service_reads_it_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: WeightsServer
) -> None:
    for name, value in TINY.items():
        monkeypatch.setenv(f"AMBIENCE_IMAGE_TEXT_{name.upper()}", value)
    assert main(["models", "fetch", "image_text"]) == 0
    folder = tokenizer_folder("image_text", TOKENIZER_NAME, tmp_path / "models")
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    asked = len(hub.log)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the hub is gone: nothing may ask it
    with client_for(tmp_path / "it") as client:
        add(client, 1)
        r = client.post("/image_text_features_get_similar_images_by_text", json={"text": "a red car", "k": 1})
        assert r.status_code == 200 and r.json()[0]["image_id"] == 1
    assert len(hub.log) == asked
