"""The OCR service over HTTP: real OCR (rapidocr's packaged PP-OCRv4 models) of rendered signs on
photographs, stored in a real PostgreSQL server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ambience_support.images import encode, png_bomb, synthetic_image
from ambience_support.pg import TestServer
from ambience_support.processes import ServiceProcess
from ambience_support.signs import Sign, render
from services.common.postgres.database import PostgresSettings
from services.ocr.service import OcrSettings, build_app

# id -> sign. Fonts, sizes and angles vary; "Coffee Shop" and "Pizzeria Napoli" are the near
# misses for the cafe and "roma" queries.
SIGNS = {
    11: Sign(("CAFE ROMA",), "DejaVuSans-Bold.ttf", 44, 3, 0),
    12: Sign(("Bakery Schmidt",), "DejaVuSerif.ttf", 38, -4, 1),
    13: Sign(("PHARMACY", "open 24 hours"), "DejaVuSansMono.ttf", 34, 2, 2),
    14: Sign(("Hotel Bellevue",), "DejaVuSerif-Bold.ttf", 40, -2, 3),
    15: Sign(("Coffee Shop",), "DejaVuSans.ttf", 30, 5, 4),
    16: Sign(("Pizzeria Napoli",), "DejaVuSans-Bold.ttf", 28, -3, 5),
}
NO_TEXT_ID = 20

QUERIES = [
    # exact
    ("cafe roma", 11),
    ("Bakery Schmidt", 12),
    ("pharmacy", 13),
    ("hotel bellevue", 14),
    # misspelt
    ("caffe roma", 11),
    ("caffe", 11),
    ("bakrey", 12),
    ("hotell belvue", 14),
    ("pizeria", 16),
    # phonetic
    ("kafe", 11),
    ("kafe roma", 11),
    ("shmit", 12),
    ("farmacy", 13),
    # partial
    ("roma", 11),
    ("schmi", 12),
    ("bellev", 14),
    ("napol", 16),
    ("24 hours", 13),
]


def add(client: Any, image_id: Any, data: bytes) -> Any:
    return client.post(
        "/calculate_ocr_features", files={"image": ("sign.jpg", data)}, data={"image_id": str(image_id)}
    )


def search(client: Any, text: str, k: int = 5) -> Any:
    return client.post("/ocr_search_by_text", json={"text": text, "k": k})


@pytest.fixture(scope="module")
def signs() -> dict[int, bytes]:
    return {image_id: encode(render(sign)[0], quality=90) for image_id, sign in SIGNS.items()}


@pytest.fixture(scope="module")
def ocr_dsn(pg_server: TestServer) -> str:
    return pg_server.new_database("ocr_service")


@pytest.fixture(scope="module")
def client(
    ocr_dsn: str, signs: dict[int, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = OcrSettings(data_dir=tmp_path_factory.mktemp("ocr"))
    app = build_app(settings, PostgresSettings(dsn=ocr_dsn, connect_timeout_s=2))
    with TestClient(app) as client:
        for image_id, data in signs.items():
            assert add(client, image_id, data).json() == {"image_id": image_id}
        assert add(client, NO_TEXT_ID, encode(synthetic_image(3, (480, 360)))).status_code == 200
        yield client


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_query_finds_the_sign_first(client: TestClient, query: str, expected: int) -> None:
    hits = search(client, query).json()
    assert hits and hits[0]["image_id"] == expected, hits
    assert set(hits[0]) == {"image_id", "score", "text"}
    assert 0 < hits[0]["score"] <= 1


def test_exact_text_is_returned_and_scores_descend(client: TestClient) -> None:
    hits = search(client, "cafe roma", k=10).json()
    assert hits[0]["text"] == "CAFE ROMA" and hits[0]["score"] == 1.0
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len(search(client, "cafe", k=1).json()) == 1


def test_image_without_text_is_kept_and_never_returned(client: TestClient) -> None:
    r = add(client, NO_TEXT_ID, encode(synthetic_image(3, (480, 360))))
    assert r.status_code == 409 and "already exists" in r.json()["detail"]  # not processed again
    for query in ("a", "e", "o", "cafe", "1"):
        assert NO_TEXT_ID not in [h["image_id"] for h in search(client, query, k=100).json()]
    stats = client.get("/stats").json()
    assert stats["count"] == len(SIGNS) + 1 and stats["with_text"] == len(SIGNS)


def test_a_repeated_add_names_the_sha256_of_the_stored_file(
    client: TestClient, signs: dict[int, bytes]
) -> None:
    """As every store: the gateway counts a 409 as done only when the service holds its very file."""
    held = hashlib.sha256(signs[11]).hexdigest()
    for upload in (signs[11], signs[12]):  # the same file again, then another image under the id
        reply = add(client, 11, upload)
        assert reply.status_code == 409, reply.text
        assert reply.json()["detail"] == f"image_id 11 already exists (sha256 {held})"


def test_get_image_text_is_stateless_with_boxes(client: TestClient, signs: dict[int, bytes]) -> None:
    count = client.get("/stats").json()["count"]
    image, (x0, y0, x1, y1) = render(SIGNS[13])
    body = client.post("/get_image_text", files={"image": ("s.png", encode(image, "PNG"))}).json()
    assert [line["text"] for line in body["lines"]] == ["PHARMACY", "open 24 hours"]
    assert body["text"] == "PHARMACY\nopen 24 hours"
    for line in body["lines"]:
        assert 0.5 <= line["confidence"] <= 1
        assert len(line["box"]) == 4
        for x, y in line["box"]:  # inside the rendered panel (a few pixels of slack)
            assert x0 - 5 <= x <= x1 + 5 and y0 - 5 <= y <= y1 + 5
    empty = client.post("/get_image_text", files={"image": ("e.jpg", encode(synthetic_image(4)))}).json()
    assert empty == {"text": "", "lines": []}
    assert client.get("/stats").json()["count"] == count


def test_stored_text_is_read_back_by_id(client: TestClient, signs: dict[int, bytes]) -> None:
    body = client.post("/get_stored_image_text", json={"image_id": 13}).json()
    assert body["text"] == "PHARMACY\nopen 24 hours"
    assert [line["text"] for line in body["lines"]] == ["PHARMACY", "open 24 hours"]
    missing = client.post("/get_stored_image_text", json={"image_id": 987654})
    assert missing.status_code == 404 and "987654" in missing.json()["detail"]
    assert client.post("/get_stored_image_text", json={"image_id": -1}).status_code == 422


def test_delete(client: TestClient, signs: dict[int, bytes]) -> None:
    assert add(client, 30, signs[12]).status_code == 200
    assert 30 in [h["image_id"] for h in search(client, "bakery schmidt").json()]
    assert client.post("/delete_ocr_features", json={"image_id": 30}).json() == {
        "image_id": 30,
        "deleted": True,
    }
    assert client.post("/delete_ocr_features", json={"image_id": 30}).json()["deleted"] is False
    assert 30 not in [h["image_id"] for h in search(client, "bakery schmidt").json()]


@pytest.mark.parametrize(
    ("label", "payload", "status"),
    [
        ("empty upload", b"", 422),
        ("text file named .jpg", b"this is not an image\n" * 10, 422),
        ("1x1 image", encode(synthetic_image(1, (1, 1)), "PNG"), 422),
        ("decompression bomb", png_bomb(), 413),
    ],
)
def test_bad_images_are_4xx(client: TestClient, label: str, payload: bytes, status: int) -> None:
    r = add(client, 40, payload)
    assert r.status_code == status, (label, r.text)
    assert isinstance(r.json()["detail"], str)
    assert client.post("/get_image_text", files={"image": ("x.jpg", payload)}).status_code == status
    assert client.post("/delete_ocr_features", json={"image_id": 40}).json()["deleted"] is False


@pytest.mark.parametrize("image_id", [-1, "abc", "1.5", 2**63])
def test_bad_image_ids_are_422(client: TestClient, image_id: Any, signs: dict[int, bytes]) -> None:
    r = add(client, image_id, signs[11])
    assert r.status_code == 422 and "image_id" in r.text


@pytest.mark.parametrize(
    "body", [{}, {"text": ""}, {"text": "!!!"}, {"text": "cafe", "k": 0}, {"text": "cafe", "k": 10**6}]
)
def test_bad_queries_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/ocr_search_by_text", json=body)
    assert r.status_code == 422, r.text


def test_info_routes(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["weights"] == "packaged" and "PP-OCRv4" in health["model"]
    assert "ambience_extract_seconds" in client.get("/metrics").text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/calculate_ocr_features",
        "/delete_ocr_features",
        "/get_image_text",
        "/ocr_search_by_text",
    } <= set(paths)


def test_postgres_down_is_503_and_the_service_recovers(
    client: TestClient, pg_server: TestServer, signs: dict[int, bytes]
) -> None:
    embedded = pg_server.require_embedded()
    embedded.stop()
    try:
        for r in (
            search(client, "cafe roma"),
            add(client, 50, signs[14]),
            client.post("/delete_ocr_features", json={"image_id": 11}),
            client.get("/health"),
        ):
            assert r.status_code == 503, r.text
            assert "PostgreSQL" in r.json()["detail"] and "unavailable" in r.json()["detail"]
        # OCR alone does not need the database.
        assert client.post("/get_image_text", files={"image": ("s.jpg", signs[11])}).status_code == 200
    finally:
        embedded.start()
    assert client.get("/health").status_code == 200
    assert search(client, "cafe roma").json()[0]["image_id"] == 11
    assert add(client, 50, signs[14]).status_code == 200  # nothing was half-written during the outage


def test_restart_keeps_everything(ocr_dsn: str, signs: dict[int, bytes], tmp_path: Path) -> None:
    env = {"AMBIENCE_PG_DSN": ocr_dsn}
    first = ServiceProcess("services.ocr", "AMBIENCE_OCR_", tmp_path / "ocr", env).start()
    try:
        before = httpx.post(first.url + "/ocr_search_by_text", json={"text": "kafe roma", "k": 10}).json()
        assert before[0]["image_id"] == 11
        assert add(httpx.Client(base_url=first.url, timeout=60), 60, signs[16]).status_code == 200
    finally:
        first.stop()
    second = ServiceProcess("services.ocr", "AMBIENCE_OCR_", tmp_path / "ocr", env).start()
    try:
        after = httpx.post(second.url + "/ocr_search_by_text", json={"text": "kafe roma", "k": 10}).json()
        assert after[0] == before[0]
        napoli = httpx.post(second.url + "/ocr_search_by_text", json={"text": "napoli", "k": 5}).json()
        assert {16, 60} <= {h["image_id"] for h in napoli}
        assert add(httpx.Client(base_url=second.url, timeout=60), 60, signs[16]).status_code == 409
    finally:
        second.stop()
