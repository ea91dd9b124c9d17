"""Faults during concurrent adds: the gateway killed -9 three times, a service down for a while,
PostgreSQL restarted once. Afterwards every acknowledged image is complete in every enabled service,
no spool or temp file is left, and a reused id holds the image added last, nowhere another one."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack

#: Left out of day-to-day runs (pytest -m "not slow"): kills, outages and a database restart.
pytestmark = pytest.mark.slow

NAMES = ["phash", "color"]
IMAGES = 48
REUSED = range(0, IMAGES, 8)  # ids deleted and added again with another picture
SIZE = (96, 72)


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[GatewayStack]:
    pg_server.require_embedded()
    st = start_stack(tmp_path, pg_server, NAMES)
    yield st
    st.stop()


def picture(seed: int) -> bytes:
    return encode(synthetic_image(seed, SIZE))


def until_acknowledged(send, stop_at: float) -> httpx.Response:  # type: ignore[no-untyped-def]
    """What a careful client does: resend on a lost connection or a 5xx, until the gateway answers
    for good. (An id still being deleted is no refusal: the add is queued behind the delete.)"""
    while True:
        assert time.monotonic() < stop_at, "the gateway never acknowledged"
        try:
            reply = send()
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if reply.status_code >= 500:
            time.sleep(0.2)
            continue
        return reply


def test_kills_an_outage_and_a_database_restart_lose_nothing(
    stack: GatewayStack, pg_server: TestServer
) -> None:
    embedded = pg_server.require_embedded()
    stop_at = time.monotonic() + 300  # a guard against a hang, not a timing (a loaded CI box is slow)
    final: dict[int, int] = {}  # acknowledged id -> seed of the picture it must hold
    lock = threading.Lock()

    def add(image_id: int, seed: int) -> None:
        data = picture(seed)
        reply = until_acknowledged(
            lambda: httpx.post(
                stack.url + "/calculate_all_image_features",
                files={"image": ("document", data)},
                data={"image_id": str(image_id)},
                timeout=30,
            ),
            stop_at,
        )
        # 409 "the same image": our earlier try was recorded before the gateway died.
        assert reply.status_code == 200 or "the same image" in reply.text, reply.text
        with lock:
            final[image_id] = seed

    def client(image_id: int) -> None:
        add(image_id, image_id)
        if image_id in REUSED:
            reply = until_acknowledged(
                lambda: httpx.post(
                    stack.url + "/delete_all_image_features", json={"image_id": image_id}, timeout=30
                ),
                stop_at,
            )
            assert reply.status_code == 200, reply.text
            with lock:
                final.pop(image_id, None)
            add(image_id, 1000 + image_id)

    def faults() -> None:
        gateway, color = stack.gateway, stack.services["color"]
        time.sleep(1.0)
        gateway.kill()
        gateway.start()
        color.kill()  # down for a while: its parts wait, deletes of reused ids wait
        time.sleep(1.0)
        gateway.kill()
        gateway.start()
        embedded.stop()
        time.sleep(1.0)
        embedded.start()
        color.start()
        time.sleep(0.5)
        gateway.kill()
        gateway.start()

    fault_thread = threading.Thread(target=faults)
    fault_thread.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client, range(IMAGES)))
    fault_thread.join()

    assert sorted(final) == list(range(IMAGES))
    stack.wait_complete(sorted(final), timeout=60)
    for service in NAMES:
        url = stack.services[service].url
        for image_id, seed in final.items():
            # A repeated add names the SHA-256 of the file the service holds under the id.
            probe = httpx.post(
                f"{url}/calculate_{service}_features",
                files={"image": ("document", picture(seed))},
                data={"image_id": str(image_id)},
                timeout=30,
            )
            assert probe.status_code == 409, f"{service} lost image {image_id}"
            assert hashlib.sha256(picture(seed)).hexdigest() in probe.text, f"{service} {image_id}"
    for image_id in REUSED:  # the features are the new picture's, not the old one's
        for seed, expected in ((1000 + image_id, True), (image_id, False)):
            hits = httpx.post(
                stack.services["phash"].url + "/phash_get_similar_images_by_image_buffer",
                files={"image": ("document", picture(seed))},
                data={"distance_threshold": "0"},
                timeout=30,
            ).json()
            assert (image_id in [h["image_id"] for h in hits]) == expected, (image_id, seed, hits)

    leftovers = [
        p
        for p in Path(stack.gateway.env["AMBIENCE_GATEWAY_DATA_DIR"]).rglob("*")
        if p.is_file() and ("spool" in p.parts or p.suffix == ".tmp")
    ]
    for service in NAMES:
        leftovers += list(
            Path(stack.services[service].env[f"AMBIENCE_{service.upper()}_DATA_DIR"]).rglob("*.tmp")
        )
    assert leftovers == []
