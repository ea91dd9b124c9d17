"""The gateway's /health over real HTTP, services as processes: with some services up and one
stopped it says ``degraded`` and names the one that is not up; up again once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack

NAMES = ["phash", "color"]
KEY = "health-key"


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path, pg_server, NAMES, {"AMBIENCE_API_KEY": KEY})
    yield st
    st.stop()


def health(stack: GatewayStack, key: str | None = KEY) -> dict[str, Any]:
    reply = httpx.get(stack.url + "/health", headers={"X-API-Key": key} if key else {}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_health_is_degraded_naming_each_service_not_up(stack: GatewayStack) -> None:
    assert health(stack)["status"] == "up" and "reasons" not in health(stack)
    stack.services["color"].kill()

    now = health(stack)
    assert now["status"] == "degraded"
    assert now["services"]["phash"]["status"] == "up" and now["services"]["color"]["status"] == "down"
    assert now["catalog"]["status"] == "up"
    assert len(now["reasons"]) == 1 and now["reasons"][0].startswith("color down"), now["reasons"]
    time.sleep(1.1)  # the keyless answer is reused for a second
    assert health(stack, key=None) == {"status": "degraded"}  # without the key: only the word

    stack.services["color"].start()
    back = health(stack)
    assert back["status"] == "up" and "reasons" not in back
