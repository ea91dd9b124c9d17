"""Operations on one id ordered per service, over real HTTP: a delete still pending on a service that
is down does not block a new add of the id; the services that confirmed the delete get the new image
at once, the one that was down gets the delete and then the add when it is back (across a gateway
restart too), and the old image's features are nowhere under the id afterwards."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack

NAMES = ["phash", "color"]
IMAGE_ID = 7


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path, pg_server, NAMES)
    yield st
    st.stop()


def picture(seed: int) -> bytes:
    return encode(synthetic_image(seed, (160, 120)))


def add(stack: GatewayStack, data: bytes) -> dict[str, str]:
    reply = httpx.post(
        stack.url + "/calculate_all_image_features",
        files={"image": ("document", data)},
        data={"image_id": str(IMAGE_ID)},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return {e["service"]: e["status"] for e in reply.json()}


def held_digest(stack: GatewayStack, service: str, data: bytes) -> str | None:
    """The SHA-256 of the file ``service`` holds under the id (its 409 names it), None when it
    holds nothing there (the probe is then undone)."""
    url = stack.services[service].url
    reply = httpx.post(
        f"{url}/calculate_{service}_features",
        files={"image": ("document", data)},
        data={"image_id": str(IMAGE_ID)},
        timeout=30,
    )
    if reply.status_code == 200:
        httpx.post(f"{url}/delete_{service}_features", json={"image_id": IMAGE_ID}, timeout=30)
        return None
    assert reply.status_code == 409, reply.text
    return reply.text.split("sha256 ")[1][:64]


def exact_phash_hit(stack: GatewayStack, data: bytes) -> bool:
    hits = httpx.post(
        stack.services["phash"].url + "/phash_get_similar_images_by_image_buffer",
        files={"image": ("document", data)},
        data={"distance_threshold": "0"},
        timeout=30,
    ).json()
    return IMAGE_ID in [h["image_id"] for h in hits]


def stats(stack: GatewayStack) -> dict:
    return httpx.get(stack.url + "/catalog_stats", timeout=10).json()


@pytest.mark.parametrize("restart_gateway", [False, True], ids=["same-gateway", "gateway-restarted"])
def test_an_add_after_a_delete_pending_on_a_down_service_wins_everywhere(
    stack: GatewayStack, restart_gateway: bool
) -> None:
    old, new = picture(1), picture(2)
    new_digest = hashlib.sha256(new).hexdigest()
    assert add(stack, old) == {"phash": "ok", "color": "ok"}
    color = stack.services["color"]
    color.kill()

    deleted = httpx.post(stack.url + "/delete_all_image_features", json={"image_id": IMAGE_ID}, timeout=30)
    assert {e["service"]: e["status"] for e in deleted.json()} == {"phash": "ok", "color": "unavailable"}

    # Accepted, not "still being deleted": phash (delete confirmed) holds the new image at once.
    assert add(stack, new) == {"phash": "ok", "color": "unavailable"}
    assert held_digest(stack, "phash", new) == new_digest
    entry = stack.catalog([IMAGE_ID])[str(IMAGE_ID)]
    assert entry["state"] == "pending" and entry["digest"] == new_digest
    assert entry["parts"]["phash"]["op"] == "add" and entry["parts"]["phash"]["status"] == "done"
    assert entry["parts"]["color"]["op"] == "delete" and entry["parts"]["color"]["add_queued"] is True
    assert stats(stack)["spool_files"] == 1, "the upload is kept for color"

    if restart_gateway:  # the queue lives in PostgreSQL, the upload in the spool
        stack.gateway.kill()
        stack.gateway.start()
    color.start()
    stack.wait_complete([IMAGE_ID], timeout=60)

    for service in NAMES:
        assert held_digest(stack, service, new) == new_digest, service
    assert exact_phash_hit(stack, new) and not exact_phash_hit(stack, old)
    parts = stack.catalog([IMAGE_ID])[str(IMAGE_ID)]["parts"]
    assert {s: (p["op"], p["status"]) for s, p in parts.items()} == {s: ("add", "done") for s in NAMES}
    now = stats(stack)
    assert now["spool_files"] == 0 and now["pending_parts"] == {} and now["deleting"] == 0
    assert list((Path(stack.gateway.env["AMBIENCE_GATEWAY_DATA_DIR"]) / "spool").glob("*")) == []
