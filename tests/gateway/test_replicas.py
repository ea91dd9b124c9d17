"""Two gateway processes on one catalog (replicas behind a load balancer) answer the same duplicate
groups whatever went through which, and so does a gateway started afresh: real gateways, real
phash and color services, a real PostgreSQL, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import ImageOps

from ambience_support.explore import SOURCES_ENV, add, post, textured
from ambience_support.images import encode
from ambience_support.pg import TestServer
from ambience_support.processes import ServiceProcess
from ambience_support.stacks import GatewayStack, start_stack

#: Gateway A links copies at add time and rebuilds with a wide threshold; B links at add time only
#: near-identical pictures (and aligns no thumbnails), so that pairs B added become a group only
#: through A's rebuild. Generated pictures are 240+ phash bits apart, their half-size copies 82-136
#: from them.
WIDE, TIGHT = "200", "60"


def gateway_b(stack: GatewayStack, tmp_path: Path) -> ServiceProcess:
    env = {
        **stack.env,
        "AMBIENCE_GATEWAY_DUPLICATE_DISTANCE": TIGHT,
        "AMBIENCE_GATEWAY_COPY_ALIGNMENT_CANDIDATES": "0",
        "AMBIENCE_GATEWAY_RUNNER_STATE_DIR": str(tmp_path / "run-b"),
    }
    return ServiceProcess("gateway", "AMBIENCE_GATEWAY_", tmp_path / "gateway-b", extra_env=env).start()


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(
        tmp_path, pg_server, ["phash", "color"], {**SOURCES_ENV, "AMBIENCE_GATEWAY_DUPLICATE_DISTANCE": WIDE}
    )
    yield st
    st.stop()


def copies(url: str) -> dict[str, Any]:
    reply = post(url, "/duplicate_groups", {"kind": "copies"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def grouped(reply: dict[str, Any]) -> list[tuple[int, list[int]]]:
    """(keeper, sorted members) per group."""
    return sorted((g["keeper"], sorted(m["image_id"] for m in g["members"])) for g in reply["groups"])


def test_replicas_answer_the_same_groups_after_adds_deletes_rebuilds_and_restarts(
    stack: GatewayStack, tmp_path: Path
) -> None:
    a = stack.url
    b_process = gateway_b(stack, tmp_path)
    try:
        b = b_process.url
        assert copies(b)["groups"] == []  # B holds its groups in memory from now on

        picture = textured(3)
        add(a, 1, encode(picture.resize((200, 150)), quality=80))
        add(a, 2, encode(textured(4)))
        add(a, 3, encode(picture, quality=95))
        add(a, 4, encode(ImageOps.mirror(picture), quality=90))
        on_b = copies(b)
        assert grouped(on_b) == [(3, [1, 3, 4])]
        assert copies(a) == on_b

        r = httpx.post(a + "/delete_all_image_features", json={"image_id": 3}, timeout=60)
        assert r.status_code == 200, r.text
        on_b = copies(b)
        assert grouped(on_b) == [(4, [1, 4])]
        assert copies(a) == on_b

        other = textured(7)
        add(b, 10, encode(other))
        add(b, 11, encode(other.resize((200, 150)), quality=80))  # 136 bits: no copy for B's threshold
        assert grouped(copies(a)) == grouped(copies(b)) == [(4, [1, 4])]

        rebuilt = post(a, "/duplicate_groups/rebuild", {"kind": "copies"})
        assert rebuilt.status_code == 200, rebuilt.text
        on_b = copies(b)
        assert grouped(on_b) == [(4, [1, 4]), (10, [10, 11])]
        assert copies(a) == on_b

        b_process.stop()
        b_process = gateway_b(stack, tmp_path)
        assert copies(b_process.url) == on_b
    finally:
        b_process.stop()
