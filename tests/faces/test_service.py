"""The faces service over its ASGI app with the real dlib weights (from face_recognition_models):
the standard contract, the faces of an image, per-face searches, paging through the descriptors,
the change log, and bad input."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ambience_support.contract import StandardRoutesContract
from ambience_support.face_photos import crowd, pasted, portrait_variant
from ambience_support.images import encode, synthetic_image

pytest.importorskip("dlib")

from services.faces import service as faces_service
from services.faces.service import build_app
from services.faces.settings import FacesSettings

#: Left out of day-to-day runs (pytest -m "not slow"): the real face detector and descriptor.
pytestmark = pytest.mark.slow


def client_for(tmp_path: Path, **settings: Any) -> TestClient:
    return TestClient(build_app(FacesSettings(data_dir=tmp_path / "faces", **settings)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path) as c:
        yield c


class TestFacesRoutes(StandardRoutesContract):
    store_route = "faces_features"
    search_route = "faces"

    def image(self, seed: int) -> Image.Image:
        # One real face per picture; seeds 6 and 9 (the contract's "unrelated picture") are ~0.5
        # apart, re-encodings of one picture ~0.15.
        return portrait_variant(seed)

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with client_for(tmp_path) as c:
            yield c


def add(client: TestClient, image_id: int, data: bytes) -> Any:
    reply = client.post(
        "/calculate_faces_features", files={"image": ("a.jpg", data)}, data={"image_id": str(image_id)}
    )
    assert reply.status_code == 200, reply.text
    return reply


def faces_of(client: TestClient, image_id: int, **body: Any) -> Any:
    return client.post("/faces_of_image", json={"image_id": image_id, **body})


def test_faces_of_an_image_are_its_boxes_landmarks_scores_and_descriptors(client: TestClient) -> None:
    picture = portrait_variant(3)
    add(client, 1, encode(picture))
    reply = faces_of(client, 1).json()
    assert (reply["width"], reply["height"]) == picture.size
    assert reply["found"] == 1 and not reply["capped"] and not reply["out_of_time"]
    (face,) = reply["faces"]
    left, top, right, bottom = face["box"]
    assert 0 <= left < right <= picture.width and 0 <= top < bottom <= picture.height
    assert face["size"] == pytest.approx(min(right - left, bottom - top)) and face["size"] > 100
    assert face["score"] > 0 and face["found_by"] == "hog" and face["descriptor"] is None
    points = np.asarray(face["landmarks"])
    assert points.shape == (5, 2)
    # dlib's 5 points: eye corners above the nose, all inside the face's box
    assert ((points >= [left, top]) & (points <= [right, bottom])).all()
    assert points[4, 1] > points[:4, 1].max()
    with_descriptors = faces_of(client, 1, descriptors=True).json()["faces"][0]["descriptor"]
    assert len(with_descriptors) == 128 and 0.2 < np.linalg.norm(with_descriptors) < 3
    assert faces_of(client, 2).status_code == 404
    assert faces_of(client, 1, extra=1).status_code == 422


def test_a_photo_without_a_face_is_stored_with_none(client: TestClient) -> None:
    data = encode(synthetic_image(7, (640, 480)))
    add(client, 5, data)
    reply = faces_of(client, 5).json()
    assert reply["faces"] == [] and reply["found"] == 0
    assert client.get("/stats").json()["count"] == 1
    by_image = client.post(
        "/faces_get_similar_images_by_image_buffer", files={"image": ("q.jpg", data)}, data={"k": "3"}
    )
    assert by_image.json() == []
    assert client.post("/faces_get_similar_images_by_id", json={"image_id": 5, "k": 3}).json() == []


def test_search_by_image_returns_images_by_their_nearest_face(client: TestClient) -> None:
    add(client, 1, encode(portrait_variant(1)))
    add(client, 2, encode(portrait_variant(4)))
    add(client, 3, encode(synthetic_image(3)))
    hits = client.post(
        "/faces_get_similar_images_by_image_buffer",
        files={"image": ("q.jpg", encode(portrait_variant(1), quality=85))},
        data={"k": "5"},
    ).json()
    assert [h["image_id"] for h in hits] == [1, 2]  # the faceless image is never a hit
    assert hits[0]["distance"] < 0.2 < hits[1]["distance"]
    assert {(h["face"], h["query_face"]) for h in hits} == {(0, 0)}
    near = client.post(
        "/faces_get_similar_images_by_image_buffer",
        files={"image": ("q.jpg", encode(portrait_variant(1)))},
        data={"distance_threshold": str(hits[0]["distance"] + 0.05)},
    ).json()
    assert [h["image_id"] for h in near] == [1]
    by_id = client.post("/faces_get_similar_images_by_id", json={"image_id": 1, "k": 2}).json()
    assert [h["image_id"] for h in by_id] == [1, 2] and by_id[0]["distance"] == 0


def test_each_face_of_an_upload_with_its_nearest_stored_faces(client: TestClient) -> None:
    add(client, 1, encode(portrait_variant(1)))
    add(client, 2, encode(portrait_variant(4)))
    reply = client.post(
        "/faces_search_faces_by_image_buffer",
        files={"image": ("q.jpg", encode(portrait_variant(1)))},
        data={"k": "2"},
    ).json()
    (face,) = reply["faces"]
    assert [(m["image_id"], m["face"]) for m in face["matches"]] == [(1, 0), (2, 0)]
    assert face["matches"][0]["distance"] < face["matches"][1]["distance"]
    assert len(face["box"]) == 4 and reply["image_id"] is None
    # by id: the stored face itself is left out
    by_id = client.post("/faces_search_faces_by_id", json={"image_id": 1, "face": 0, "k": 5}).json()
    assert [(m["image_id"], m["face"]) for m in by_id["faces"][0]["matches"]] == [(2, 0)]
    none_near = client.post(
        "/faces_search_faces_by_id", json={"image_id": 1, "distance_threshold": 0.01}
    ).json()
    assert none_near["faces"][0]["matches"] == []
    assert (
        client.post("/faces_search_faces_by_id", json={"image_id": 1, "face": 3, "k": 1}).status_code == 404
    )
    assert client.post("/faces_search_faces_by_id", json={"image_id": 1}).status_code == 422
    form = client.post(
        "/faces_search_faces_by_image_buffer", files={"image": ("q.jpg", b"nope")}, data={"k": "1"}
    )
    assert form.status_code == 422


def decode_page(page: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(page["descriptors"]), "<f4").reshape(-1, 128)


def test_descriptors_page_through_every_stored_face_and_changes_follow(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for image_id, data in (
        (30, encode(portrait_variant(1))),
        (10, encode(synthetic_image(2))),  # no face
        (20, encode(crowd(1, 3, 90))),  # three faces
    ):
        add(client, image_id, data)
    first = client.post("/faces_descriptors", json={"limit": 2}).json()
    assert first["images"] == [10, 20] and first["next_after"] == 20
    assert first["image_ids"] == [20, 20, 20] and first["faces"] == [0, 1, 2]
    stored = [faces_of(client, 20, descriptors=True).json()["faces"][i]["descriptor"] for i in range(3)]
    assert np.allclose(decode_page(first), stored)
    second = client.post("/faces_descriptors", json={"after": 20, "limit": 2}).json()
    assert second["images"] == [30] and second["next_after"] is None and second["image_ids"] == [30]
    # a page ends early once it holds enough faces (crowds keep a page small)
    monkeypatch.setattr(faces_service, "MAX_PAGE_FACES", 2)
    early = client.post("/faces_descriptors", json={"limit": 10}).json()
    assert early["images"] == [10, 20] and early["next_after"] == 20 and len(early["faces"]) == 3
    monkeypatch.undo()
    generation = first["generation"]
    assert client.post("/faces_changes", json={"since": generation}).json() == {
        "generation": generation,
        "changes": [],
        "more": False,
    }
    client.post("/delete_faces_features", json={"image_id": 20})
    add(client, 40, encode(portrait_variant(2)))
    changes = client.post("/faces_changes", json={"since": generation, "limit": 1}).json()
    assert changes["more"] and [(c["op"], c["image_id"]) for c in changes["changes"]] == [("delete", 20)]
    rest = client.post("/faces_changes", json={"since": changes["generation"]}).json()
    assert not rest["more"] and [(c["op"], c["image_id"]) for c in rest["changes"]] == [("add", 40)]
    # deleting an image deleted its faces
    assert faces_of(client, 20).status_code == 404
    assert 20 not in client.post("/faces_descriptors", json={}).json()["image_ids"]
    # a snapshot trims the log: a client that fell behind is told to page again
    client.app.state.collection.snapshot(force=True)  # type: ignore[attr-defined]
    gone = client.post("/faces_changes", json={"since": generation})
    assert gone.status_code == 410 and "/faces_descriptors" in gone.json()["detail"]
    for body in ({"limit": 0}, {"limit": 10_001}, {"after": -1}, {"since": 0, "x": 1}):
        route = "/faces_changes" if "since" in body else "/faces_descriptors"
        assert client.post(route, json=body).status_code == 422, body


def test_a_crowd_keeps_its_largest_faces_within_the_cap_and_the_time_budget(tmp_path: Path) -> None:
    data = encode(crowd(3, 4, 90))  # 12 faces, each a pixel larger than the one before
    with client_for(tmp_path / "capped", max_faces=5) as capped:
        add(capped, 1, data)
        reply = faces_of(capped, 1).json()
        assert reply["found"] == 12 and reply["capped"] and not reply["out_of_time"]
        sizes = [f["size"] for f in reply["faces"]]
        # largest first (boxes come in steps of HOG's pyramid: equal sizes differ in float32 rounding)
        assert len(sizes) == 5 and all(a >= b - 1e-3 for a, b in itertools.pairwise(sizes))
        assert sizes[0] > sizes[-1]
        assert 'ambience_faces_dropped_total{reason="max_faces"} 7.0' in capped.get("/metrics").text
    with client_for(tmp_path / "hurried", time_budget_s=0.001, descriptor_batch=4) as hurried:
        add(hurried, 1, data)
        reply = faces_of(hurried, 1).json()
        # the first batch always runs; no other starts once the budget is spent
        assert reply["found"] == 12 and reply["out_of_time"] and len(reply["faces"]) == 4
        assert 'ambience_faces_dropped_total{reason="time_budget"} 8.0' in hurried.get("/metrics").text


def test_uploads_over_the_limits_are_413(tmp_path: Path) -> None:
    data = encode(portrait_variant(1), quality=95)
    with client_for(tmp_path / "bytes", max_upload_bytes=len(data) - 1) as small:
        r = small.post("/calculate_faces_features", files={"image": ("a.jpg", data)}, data={"image_id": "1"})
        assert r.status_code == 413
        r = small.post(
            "/faces_search_faces_by_image_buffer", files={"image": ("a.jpg", data)}, data={"k": "1"}
        )
        assert r.status_code == 413
    with client_for(tmp_path / "pixels", max_pixels=100_000) as few:
        r = few.post("/calculate_faces_features", files={"image": ("a.jpg", data)}, data={"image_id": "1"})
        assert r.status_code == 413 and "pixels" in r.json()["detail"]
        assert few.get("/health").status_code == 200
        assert few.post("/faces_of_image", json={"image_id": 1}).status_code == 404  # nothing stored


def test_stats_name_the_packaged_weights_and_count_faces(client: TestClient) -> None:
    add(client, 1, encode(crowd(1, 2, 90)))
    stats = client.get("/stats").json()
    assert stats["weights"] == "packaged" and stats["weights_dir"].endswith("face_recognition_models/models")
    assert stats["faces"] == 2 and stats["count"] == 1 and stats["index"]["entries"] == 2
    assert stats["store"]["metadata"]["descriptor"] == "dlib_face_recognition_resnet_model_v1"
    assert "ambience_faces_stored_total 2.0" in client.get("/metrics").text


def test_a_face_below_the_minimum_is_ignored(tmp_path: Path) -> None:
    small_face = encode(pasted(45, (1600, 1200)))  # the minimum here is 5% of 1600 px = 80 px
    with client_for(tmp_path / "default") as default:
        add(default, 1, small_face)
        assert faces_of(default, 1).json()["faces"] == []
    # the same photo with a minimum of 40 px: the face is there
    with client_for(tmp_path / "lower", min_face_fraction=0.025) as lower:
        add(lower, 1, small_face)
        (face,) = faces_of(lower, 1).json()["faces"]
        assert 40 <= face["size"] < 80


def test_faces_survive_a_restart_from_the_snapshot_and_from_the_store(tmp_path: Path) -> None:
    with client_for(tmp_path) as first:
        add(first, 1, encode(crowd(1, 3, 90)))
        add(first, 2, encode(portrait_variant(1)))
    with client_for(tmp_path) as again:  # a clean shutdown wrote a snapshot
        stats = again.get("/stats").json()
        assert stats["index"]["loaded_from"] == "snapshot" and stats["index"]["entries"] == 4
        again.post("/delete_faces_features", json={"image_id": 1})
    (tmp_path / "faces" / "index.snapshot").unlink()
    with client_for(tmp_path) as rebuilt:  # no snapshot: the index is rebuilt from the records
        stats = rebuilt.get("/stats").json()
        assert stats["index"]["loaded_from"] == "rebuild" and stats["index"]["entries"] == 1
        hits = rebuilt.post("/faces_get_similar_images_by_id", json={"image_id": 2, "k": 3}).json()
        assert [h["image_id"] for h in hits] == [2]


def test_photos_analysed_in_parallel_threads_do_not_crash_the_service(tmp_path: Path) -> None:
    """dlib's HOG detector is not safe across threads (two concurrent adds crashed the process
    once): every thread gets its own."""
    from concurrent.futures import ThreadPoolExecutor

    feature = faces_service.FacesFeature(FacesSettings(data_dir=tmp_path / "faces"))
    feature.load()
    pictures = [encode(portrait_variant(seed)) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(feature.faces_of, pictures * 3))
    assert [len(f) for f in found] == [1] * 24
