"""The gateway's /health over real HTTP, services in-process (ambience_support.inprocess): with some
services up and one stopped (its port closed) it says ``degraded`` and names the one that is not up;
up again once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer

NAMES = ["phash", "color"]
KEY = "health-key"


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path, pg_server, NAMES, gateway={"api_key": KEY}) as st:
        yield st


def health(stack: InProcessStack, key: str | None = KEY) -> dict[str, Any]:
    reply = httpx.get(stack.url + "/health", headers={"X-API-Key": key} if key else {}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_health_is_degraded_naming_each_service_not_up(stack: InProcessStack) -> None:
    assert health(stack)["status"] == "up" and "reasons" not in health(stack)
    stack.services["color"].stop()

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
