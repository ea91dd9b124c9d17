"""docs/architecture.md, "Adding a service": a service package with a descriptor is all the kit
needs. The toy service in ambience_support/toy_service has settings, a feature class and its descriptor, and
no app factory or route table of its own; the descriptor alone builds an app that honours the
standard-route contract, through the same ``ServiceDescriptor.build_app`` that ``python -m
services.<name>`` runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ambience_support.contract import StandardRoutesContract
from ambience_support.images import encode, synthetic_image
from ambience_support.toy_service.descriptor import DESCRIPTOR
from services.common.descriptor import ServiceDescriptor
from services.common.runner import build_app
from services.registry import load_descriptor

assert DESCRIPTOR.store is not None and DESCRIPTOR.search is not None


def toy_client(data_dir: Path) -> TestClient:
    return TestClient(build_app(DESCRIPTOR, DESCRIPTOR.settings_class()(data_dir=data_dir)))


class TestToyServiceRoutes(StandardRoutesContract):
    store_route = DESCRIPTOR.store
    search_route = DESCRIPTOR.search

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with toy_client(tmp_path / "toy") as client:
            yield client


def test_the_registry_loads_the_toy_descriptor_like_a_real_one() -> None:
    loaded = load_descriptor("ambience_support.toy_service")
    assert isinstance(loaded, ServiceDescriptor)
    assert loaded is DESCRIPTOR
    assert loaded.env_prefix == "AMBIENCE_TOY_THUMBNAIL_"
    assert loaded.result_key == "toy_thumbnail_res"
    # What the descriptor does not state follows from the name by convention.
    assert loaded.settings_class().__name__ == "ToyThumbnailSettings"
    assert (loaded.store, loaded.search) == ("toy_thumbnail_features", "toy_thumbnail")


def test_settings_come_from_the_descriptors_env_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMBIENCE_TOY_THUMBNAIL_DATA_DIR", str(tmp_path / "elsewhere"))
    settings = DESCRIPTOR.settings_class()()
    assert settings.resolved_data_dir() == tmp_path / "elsewhere"
    assert settings.resolved_port() == DESCRIPTOR.port


def test_every_route_the_descriptor_declares_answers(tmp_path: Path) -> None:
    """The routes the gateway would proxy (``routes()``) are the ones the app serves."""
    with toy_client(tmp_path / "toy") as client:
        served = {getattr(route, "path", None) for route in client.app.routes}  # type: ignore[attr-defined]
        assert set(DESCRIPTOR.routes()) <= served
        data = encode(synthetic_image(7, (64, 48)))
        added = client.post(
            f"/calculate_{DESCRIPTOR.store}", files={"image": ("a.png", data)}, data={"image_id": "7"}
        )
        assert added.json() == {"image_id": 7}
        by_id = client.post(f"/{DESCRIPTOR.search}_get_similar_images_by_id", json={"image_id": 7, "k": 1})
        assert by_id.json() == [{"image_id": 7, "distance": 0.0}]
        by_image = client.post(
            f"/{DESCRIPTOR.search}_get_similar_images_by_image_buffer",
            files={"image": ("q.png", data)},
            data={"k": "1"},
        )
        assert [hit["image_id"] for hit in by_image.json()] == [7]
        assert client.get("/health").json()["service"] == DESCRIPTOR.name
        deleted = client.post(f"/delete_{DESCRIPTOR.store}", json={"image_id": 7})
        assert deleted.json() == {"image_id": 7, "deleted": True}
