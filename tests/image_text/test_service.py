"""image_text over HTTP with random weights (a tiny CLIP config): the standard routes, text search,
alpha-QE, truncation of long texts, empty texts; the real default architecture built once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ambience_support.contract import StandardRoutesContract
from ambience_support.images import encode, synthetic_image
from ambience_support.tiny_models import TINY_IMAGE_TEXT
from services.image_text.service import build_app
from services.image_text.settings import ImageTextSettings

TINY = TINY_IMAGE_TEXT


@pytest.fixture(autouse=True)
def random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")


def make_client(data_dir: Path, **overrides: Any) -> TestClient:
    return TestClient(build_app(ImageTextSettings(data_dir=data_dir, **{**TINY, **overrides})))


class TestImageTextRoutes(StandardRoutesContract):
    store_route = "image_text_features"
    search_route = "image_text_features"

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with make_client(tmp_path / "it") as client:
            yield client


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    with make_client(tmp_path_factory.mktemp("it") / "it") as client:
        for i in range(10):
            r = client.post(
                "/calculate_image_text_features",
                data={"image_id": str(i)},
                files={"image": ("a.jpg", encode(synthetic_image(i)))},
            )
            assert r.status_code == 200, r.text
        yield client
    mp.undo()


def text_search(client: TestClient, **body: Any) -> Any:
    return client.post("/image_text_features_get_similar_images_by_text", json=body)


def test_text_search_ranks_every_image_by_distance(filled: TestClient) -> None:
    hits = text_search(filled, text="a red bicycle", k=100).json()
    assert sorted(h["image_id"] for h in hits) == list(range(10))
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances) and 0 <= distances[0] <= 4
    # The distance is the squared L2 between the unit text and image embeddings.
    feature = filled.app.state.service  # type: ignore[attr-defined]
    text = feature.embed_text("a red bicycle")[0]
    image = np.frombuffer(filled.app.state.collection.store.get(hits[0]["image_id"]), np.float32)  # type: ignore[attr-defined]
    assert hits[0]["distance"] == pytest.approx(float(((text - image) ** 2).sum()), abs=1e-5)
    cut = distances[4]
    by_threshold = text_search(filled, text="a red bicycle", distance_threshold=cut).json()
    assert [h["image_id"] for h in by_threshold] == [h["image_id"] for h in hits[:5]]
    assert len(text_search(filled, text="a red bicycle", k=3).json()) == 3


def test_text_search_with_alpha_query_expansion(filled: TestClient) -> None:
    plain = text_search(filled, text="snow", k=10).json()
    expanded = text_search(filled, text="snow", k=10, aqe_n=3, aqe_alpha=1).json()
    assert {h["image_id"] for h in expanded} == {h["image_id"] for h in plain}
    assert expanded != plain  # the query moved towards its neighbours
    # By id the image itself is the query, not one of its n neighbours (it would count twice): with
    # a random model its neighbours are close, so only a high alpha keeps it first.
    by_id = filled.post(
        "/image_text_features_get_similar_images_by_id",
        json={"image_id": 4, "k": 3, "aqe_n": 2, "aqe_alpha": 20},
    ).json()
    assert by_id[0]["image_id"] == 4 and len(by_id) == 3
    by_image = filled.post(
        "/image_text_features_get_similar_images_by_image_buffer",
        files={"image": ("q.jpg", encode(synthetic_image(6)))},
        data={"k": "2", "aqe_n": "2"},
    ).json()
    assert by_image[0]["image_id"] == 6


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"text": "", "k": 3}, "empty"),
        ({"text": "   ", "k": 3}, "blank"),
        ({"k": 3}, "missing"),
        ({"text": "a cat", "k": 3, "distance_threshold": 1}, "both"),
        ({"text": "a cat"}, "neither"),
        ({"text": "a cat", "k": 3, "aqe_n": -1}, "negative aqe_n"),
    ],
)
def test_bad_text_queries_are_422(filled: TestClient, body: dict[str, Any], why: str) -> None:
    r = text_search(filled, **body)
    assert r.status_code == 422, why
    assert filled.get("/health").status_code == 200


def test_long_texts_are_truncated_to_the_context(filled: TestClient) -> None:
    feature = filled.app.state.service  # type: ignore[attr-defined]
    assert feature.session.context_length == 77
    long, prefix = "a dog on a beach " * 100, "a dog on a beach " * 20
    assert np.allclose(feature.embed_text(long), feature.embed_text(prefix), atol=1e-6)
    assert text_search(filled, text=long, k=2).status_code == 200


def test_health_reports_random_weights(filled: TestClient) -> None:
    health = filled.get("/health").json()
    assert health["weights"] == "random" and health["model"] == "tiny-clip" and health["dim"] == 32
    meta = filled.get("/stats").json()["store"]["metadata"]
    assert meta["model"] == "tiny-clip" and meta["weights_sha256"] == "random-seed0"


def test_real_default_architecture_builds() -> None:
    """ViT-B-32-SigLIP2-256 (the default) built once with random weights: its image tower alone at
    start-up (768-d unit vectors); the text tower (256k-token vocabulary) is only loaded when text
    is asked for (tests/image_text/test_siglip2.py runs that path on a tiny config)."""
    import torch

    from services.common.models.weights import ResolvedWeights
    from services.image_text.model import OpenClipSession

    session = OpenClipSession(
        "ViT-B-32-SigLIP2-256",
        ResolvedWeights("random", None, "random-seed0", "random"),
        torch.device("cpu"),
    )
    assert session.dim == 768 and session.context_length == 64 and not session.text.loaded
    image = session.embed_images(session.preprocess(synthetic_image(1))[None])
    assert image.shape == (1, 768) and abs(float(np.linalg.norm(image)) - 1) < 1e-5
