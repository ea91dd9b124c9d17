"""The gateway over real HTTP in front of real phash, color and local_features (RootSIFT) services and
a real PostgreSQL:
real photographs added with one call each, transformed copies found again by /reverse_search."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps

from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.photos import load_rgb
from gateway.settings import GatewaySettings

#: Left out of day-to-day runs (pytest -m "not slow"): a whole stack over the photos.
pytestmark = pytest.mark.slow

QUERIES = 24  # photos whose transformed copies are searched (all photos are added)
SEARCH_SERVICES = ["phash", "color", "local_features"]
RESULT_KEYS = [f"{name}_res" for name in SEARCH_SERVICES]


def crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((int(w * 0.1), int(h * 0.08), int(w * 0.85), int(h * 0.9)))


def thumbnail(img: Image.Image) -> Image.Image:
    small = img.copy()
    small.thumbnail((200, 200))
    return small


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "mirror": lambda img: encode(ImageOps.mirror(img), quality=90),
    "crop": lambda img: encode(crop(img), quality=90),
    "jpeg30": lambda img: encode(img, quality=30),
    "thumbnail": lambda img: encode(thumbnail(img), quality=90),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path_factory.mktemp("e2e"), pg_server, SEARCH_SERVICES) as st:
        yield st


@pytest.fixture(scope="module")
def added(stack: InProcessStack, photos: list[Path]) -> list[Path]:
    def add(item: tuple[int, Path]) -> list[dict[str, str]]:
        image_id, path = item
        with httpx.Client(timeout=60) as client:
            reply = client.post(
                stack.url + "/calculate_all_image_features",
                files={"image": ("document", path.read_bytes())},
                data={"image_id": str(image_id)},
            )
        assert reply.status_code == 200, reply.text
        return reply.json()

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(add, enumerate(photos)))
    for reply in replies:
        assert sorted(e["service"] for e in reply) == sorted(SEARCH_SERVICES)
        assert all(e["status"] in ("ok", "queued") for e in reply), reply
    return photos


def reverse_search(url: str, data: bytes, find_duplicate: str = "0") -> dict:
    reply = httpx.post(
        url + "/reverse_search",
        files={"image": ("document", data)},
        data={"find_duplicate": find_duplicate},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert "X-Ambience-Failed" not in reply.headers, reply.headers["X-Ambience-Failed"]
    return reply.json()


def test_transformed_copies_rank_their_source_first(stack: InProcessStack, added: list[Path]) -> None:
    step = max(len(added) // QUERIES, 1)
    sources = list(enumerate(added))[::step][:QUERIES]
    jobs = [
        (image_id, name, transform(load_rgb(path)))
        for image_id, path in sources
        for name, transform in TRANSFORMS.items()
    ]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda job: reverse_search(stack.url, job[2]), jobs))
    single_first = {name: 0 for name in TRANSFORMS}
    fused_first = {name: 0 for name in TRANSFORMS}
    misses = []
    for (image_id, name, _), reply in zip(jobs, replies, strict=True):
        assert set(reply) >= {
            "phash_res",
            "color_res",
            "global_features_res",
            "local_features_res",
            "image_text_res",
        }
        for key in ("phash_res", "color_res"):
            assert 0 < len(reply[key]) <= 20
        unified = reply["unified_res"]
        assert unified and all(set(e) == {"image_id", "score"} and e["image_id"] >= 0 for e in unified)
        assert [e["score"] for e in unified] == sorted((e["score"] for e in unified), reverse=True)
        found_first = [k for k in RESULT_KEYS if reply[k] and reply[k][0]["image_id"] == image_id]
        if found_first:
            single_first[name] += 1
            if unified[0]["image_id"] != image_id:
                misses.append((image_id, name, found_first, unified[:3]))
        fused_first[name] += unified[0]["image_id"] == image_id
    print("source at rank 1 by some service:", single_first, "in unified_res:", fused_first)
    assert not misses, f"a service had the source first but fusion did not: {misses}"
    # The test means something only if the services do find most copies.
    for name in TRANSFORMS:
        assert single_first[name] >= 0.9 * len(sources), (name, single_first)


def test_duplicate_mode(stack: InProcessStack, added: list[Path]) -> None:
    # A new picture is no duplicate: the reply is exactly {} (the gallery tests for the key).
    assert reverse_search(stack.url, encode(synthetic_image(4242, (640, 480))), "1") == {}
    # A re-encoded copy of a stored photo is.
    image_id = len(added) // 2
    img = load_rgb(added[image_id])
    buf = io.BytesIO()
    img.save(buf, "WEBP", quality=70)
    reply = reverse_search(stack.url, buf.getvalue(), "1")
    assert list(reply) == ["duplicate"]
    assert reply["duplicate"][0]["image_id"] == image_id
    # phash hits within the duplicate distance; crops verified by local features carry no distance
    limit = GatewaySettings().duplicate_distance
    assert all(
        e["distance"] <= limit if e["distance"] is not None else e["matches"] >= 1 for e in reply["duplicate"]
    )
