"""Reliable fan-out: a service down during adds gets every image once it is back (even across a
gateway restart), and an image deleted before its retry comes back nowhere. Services and gateway
in-process (ambience_support.inprocess): a service stopped has its port closed, a gateway restarted
is a new app over the same catalog and spool."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.stacks import add_generated as add


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path, pg_server, ["phash", "color", "ocr"]) as st:
        yield st


def count(service_url: str) -> int:
    return int(httpx.get(service_url + "/health", timeout=10).json()["count"])


def stored(stack: InProcessStack, service: str, image_id: int) -> bool:
    if service == "ocr":  # no by-id route: a repeated add tells (409 = stored)
        reply = httpx.post(
            stack.services["ocr"].url + "/calculate_ocr_features",
            files={"image": ("document", encode(synthetic_image(0, (64, 64))))},
            data={"image_id": str(image_id)},
            timeout=60,
        )
        if reply.status_code == 200:  # undo the probe
            httpx.post(stack.services["ocr"].url + "/delete_ocr_features", json={"image_id": image_id})
        return reply.status_code == 409
    reply = httpx.post(
        f"{stack.services[service].url}/{service}_get_similar_images_by_id",
        json={"image_id": image_id, "k": 1},
        timeout=10,
    )
    assert reply.status_code in (200, 404), reply.text
    return reply.status_code == 200


def stats(stack: InProcessStack) -> dict:
    return httpx.get(stack.url + "/catalog_stats", timeout=10).json()


def test_a_service_down_during_adds_gets_everything_once_back(stack: InProcessStack) -> None:
    for image_id in range(3):
        # ocr is a deferred service: queued, sent by the retry worker at once
        assert {e["status"] for e in add(stack.url, image_id).values()} == {"ok", "queued"}
    color = stack.services["color"]
    color.stop()

    # Adds go on; color's part is reported unavailable and kept for later.
    for image_id in range(3, 10):
        reply = add(stack.url, image_id)
        assert reply["phash"]["status"] == "ok" and reply["ocr"]["status"] == "queued"
        assert reply["color"]["status"] == "unavailable"
    status = stack.catalog(list(range(10)))
    assert {status[str(i)]["state"] for i in range(3, 10)} == {"pending"}
    assert stats(stack)["spool_files"] == 7

    # Deletes while color is down: a complete image (1) and an image whose color part never
    # happened (9, added then deleted before its retry). Neither may come back anywhere.
    for image_id in (1, 9):
        reply = {
            e["service"]: e
            for e in httpx.post(stack.url + "/delete_all_image_features", json={"image_id": image_id}).json()
        }
        assert reply["phash"]["status"] == reply["ocr"]["status"] == "ok"
        assert reply["color"]["status"] == "unavailable"
    assert stats(stack)["spool_files"] == 6  # 9's upload is gone with it

    # The gateway restarts meanwhile: the catalog and the spool carry the outstanding work.
    stack.gateway.stop()
    stack.gateway.start()
    assert httpx.get(stack.url + "/health").json()["services"]["color"]["status"] == "down"

    color.start()
    expected = [0, 2, 3, 4, 5, 6, 7, 8]
    final = stack.wait_complete(expected, timeout=60)
    assert all(p["status"] == "done" for i in expected for p in final[str(i)]["parts"].values())
    deadline = time.monotonic() + 30
    while (now := stats(stack))["deleting"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert now["deleting"] == 0 and now["pending_parts"] == {} and now["spool_files"] == 0
    assert str(1) not in stack.catalog([1]) and str(9) not in stack.catalog([9])

    # Nothing lost, nothing resurrected: every service holds exactly the expected images.
    for service in ("phash", "color", "ocr"):
        assert count(stack.services[service].url) == len(expected), service
    for service in ("phash", "color"):
        assert all(stored(stack, service, i) for i in expected)
        assert not stored(stack, service, 1) and not stored(stack, service, 9)
    assert stored(stack, "ocr", 5) and not stored(stack, "ocr", 9)

    # The restored color service finds its retried images.
    reply = httpx.post(
        stack.url + "/reverse_search", files={"image": ("document", encode(synthetic_image(6, (200, 150))))}
    ).json()
    assert reply["color_res"][0]["image_id"] == 6 and reply["unified_res"][0]["image_id"] == 6
