"""A gallery written for the upstream ambience gateway works unchanged: the exact bytes a Node.js
gallery sends (multipart from the `form-data` npm package, JSON from axios) and the reply shapes it
reads. Plus bad input at the gateway."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.signs import Sign, render
from ambience_support.stacks import add_generated as add

WORDS = ("LIGHTHOUSE", "BAKERY", "MUSEUM")

#: Headers axios 1.x adds in Node.js.
AXIOS_HEADERS = {
    "Accept": "application/json, text/plain, */*",
    "User-Agent": "axios/1.7.2",
    "Accept-Encoding": "gzip, compress, deflate, br",
}


def node_form_data(parts: list[tuple[str, bytes | str]]) -> tuple[bytes, dict[str, str]]:
    """What `form-data` builds for form.append(name, value) (Buffers with {filename: 'document'},
    as the upstream gallery appends its image) and the headers of form.getHeaders()."""
    boundary = "-" * 26 + "".join(random.choice("0123456789") for _ in range(24))
    body = b""
    for name, value in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if isinstance(value, bytes):
            head += '; filename="document"\r\nContent-Type: application/octet-stream'
        else:
            value = value.encode()
        body += (head + "\r\n\r\n").encode() + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    headers = {**AXIOS_HEADERS, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return body, {**headers, "Content-Length": str(len(body))}


def axios_json(payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()  # JSON.stringify
    return body, {**AXIOS_HEADERS, "Content-Type": "application/json", "Content-Length": str(len(body))}


def render_like_the_gallery(reply: dict) -> list[int]:
    """The gallery's reverse-search page: ``for (const key in searchResults) for (const child of
    searchResults[key])`` reads ``child.image_id``; a value that is not a list breaks the page."""
    shown = []
    for key, value in reply.items():
        assert isinstance(value, list), f"{key!r} is not a list: the gallery cannot iterate it"
        shown += [child["image_id"] for child in value]
    return shown


def post(url: str, request: tuple[bytes, dict[str, str]]) -> httpx.Response:
    return httpx.post(url, content=request[0], headers=request[1], timeout=120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path_factory.mktemp("gallery"), pg_server, ["phash", "color", "ocr"]) as st:
        yield st


def sign(index: int) -> bytes:
    img, _ = render(Sign((WORDS[index],), "DejaVuSans-Bold.ttf", 44, 0.0, index))
    return encode(img, quality=92)


def test_replayed_gallery_requests(stack: InProcessStack, tmp_path: Path) -> None:
    url = stack.url
    images = {100 + i: sign(i) for i in range(len(WORDS))}
    for image_id, data in images.items():
        reply = post(
            url + "/calculate_all_image_features",
            node_form_data([("image", data), ("image_id", str(image_id))]),
        )
        assert reply.status_code == 200, reply.text
        # OCR is a deferred service: stored by the retry worker after the reply (the gallery
        # reads only the HTTP status)
        assert {e["service"]: e["status"] for e in reply.json()} == {
            "phash": "ok",
            "color": "ok",
            "ocr": "queued",
        }
    stack.wait_complete(list(images), timeout=120)

    # Duplicate check before an upload: `if ("duplicate" in res.data)`.
    copy = io.BytesIO()
    from PIL import Image

    Image.open(io.BytesIO(images[101])).save(copy, "PNG")
    res = post(url + "/reverse_search", node_form_data([("image", copy.getvalue()), ("find_duplicate", "1")]))
    assert res.status_code == 200 and "duplicate" in res.json()
    assert res.json()["duplicate"][0]["image_id"] == 101
    res = post(
        url + "/reverse_search",
        node_form_data([("image", encode(synthetic_image(9))), ("find_duplicate", "1")]),
    )
    assert res.status_code == 200 and res.json() == {}

    # Similar images: `res.data.unified_res.map(el => el.image_id)`.
    res = post(url + "/reverse_search", node_form_data([("image", images[102]), ("find_duplicate", "0")]))
    assert res.status_code == 200
    assert res.json()["unified_res"][0]["image_id"] == 102
    assert 102 in render_like_the_gallery(res.json())

    # By id and by text: `res.data.map(el => el.image_id)`.
    for route in ("phash", "color"):
        res = post(f"{url}/{route}_get_similar_images_by_id", axios_json({"image_id": 100, "k": 20}))
        assert res.status_code == 200, res.text
        ids = [el["image_id"] for el in res.json()]
        assert ids[0] == 100 and sorted(ids) == sorted(images)
    res = post(url + "/ocr_search_by_text", axios_json({"text": "bakery", "k": 20}))
    assert res.status_code == 200, res.text
    assert res.json()[0]["image_id"] == 101
    res = post(url + "/get_image_text", node_form_data([("image", images[100])]))
    assert res.status_code == 200 and "LIGHTHOUSE" in res.json()["text"]
    # image_text is not enabled in this stack: the gateway says so instead of proxying.
    res = post(
        url + "/image_text_features_get_similar_images_by_text", axios_json({"text": "a dog", "k": 20})
    )
    assert res.status_code == 404 and "AMBIENCE_GATEWAY_SERVICES" in res.json()["detail"]

    # Delete: JSON {image_id}.
    res = post(url + "/delete_all_image_features", axios_json({"image_id": 101}))
    assert res.status_code == 200 and {e["status"] for e in res.json()} == {"ok"}
    res = post(url + "/ocr_search_by_text", axios_json({"text": "bakery", "k": 20}))
    assert 101 not in [el["image_id"] for el in res.json()]
    res = post(url + "/phash_get_similar_images_by_id", axios_json({"image_id": 101, "k": 20}))
    assert res.status_code == 404

    # A service down during a search: the reply keeps the upstream shape (every value a list, the
    # page still renders), the failure is in a header and in /metrics.
    stack.services["color"].stop()
    try:
        res = post(url + "/reverse_search", node_form_data([("image", images[102]), ("find_duplicate", "0")]))
        assert res.status_code == 200
        assert 102 in render_like_the_gallery(res.json())
        assert res.headers["X-Ambience-Failed"].startswith("color=unavailable")
        metrics = httpx.get(url + "/metrics").text
        assert 'ambience_gateway_search_left_out_total{service="color"} 1.0' in metrics
    finally:
        stack.services["color"].start()


def test_bad_input_is_refused_and_leaves_nothing_behind(stack: InProcessStack) -> None:
    spooled = stats(stack)["spool_files"]
    reply = httpx.post(
        stack.url + "/calculate_all_image_features",
        files={"image": ("document", b"not an image at all")},
        data={"image_id": "77"},
    )
    assert reply.status_code == 422
    # refused by the gateway itself, from the header, before any fan-out or spooling
    assert "not a recognised image" in reply.json()["detail"]
    assert stack.catalog([77]) == {} and stats(stack)["spool_files"] == spooled
    assert add(stack.url, 77)["phash"]["status"] == "ok"  # the id is still free
    again = httpx.post(
        stack.url + "/calculate_all_image_features",
        files={"image": ("document", encode(synthetic_image(1)))},
        data={"image_id": "77"},
    )
    assert again.status_code == 409
    for bad in ("-1", "abc", str(2**63)):
        reply = httpx.post(
            stack.url + "/calculate_all_image_features",
            files={"image": ("document", encode(synthetic_image(1)))},
            data={"image_id": bad},
        )
        assert reply.status_code == 422, bad


def stats(stack: InProcessStack) -> dict:
    return httpx.get(stack.url + "/catalog_stats", timeout=10).json()
