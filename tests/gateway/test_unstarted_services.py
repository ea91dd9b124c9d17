"""A stack where ``ambience serve`` could not start some services (offline, without their model
weights: local_features and image_text marked unavailable in the runner's folder): every add
still completes, its copies are found by phash alone, and what needs a missing service says why.
Real phash and color services and a real gateway in this process, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.explore import textured
from ambience_support.images import encode
from ambience_support.inprocess import AppServer, InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.processes import free_port
from ambience_support.stacks import wait_complete

UNSTARTED = ("local_features", "image_text")


@pytest.fixture
def gateway(tmp_path: Path, pg_server: TestServer) -> Iterator[AppServer]:
    with inprocess_stack(tmp_path, pg_server, ["phash", "color"]) as stack:
        yield offline_gateway(stack, tmp_path)


def offline_gateway(stack: InProcessStack, tmp_path: Path) -> AppServer:
    """A gateway over the stack's services plus two nobody started, as ``ambience serve`` leaves it."""
    run = tmp_path / "run-offline"
    run.mkdir()
    for name in UNSTARTED:
        (run / f"{name}.unavailable").write_text("model weights missing (see the service's log)")
    urls = {
        **{n: s.url for n, s in stack.services.items()},
        **{n: f"http://127.0.0.1:{free_port()}" for n in UNSTARTED},
    }
    return stack.another_gateway(
        tmp_path / "gateway-offline", services=list(urls), service_urls=urls, runner_state_dir=run
    )


def test_every_add_completes_and_copies_are_found_without_the_services_nobody_started(
    gateway: AppServer,
) -> None:
    picture = textured(5)
    for image_id, data in ((1, encode(picture)), (2, encode(picture.resize((240, 180)), quality=80))):
        reply = httpx.post(
            gateway.url + "/calculate_all_image_features",
            files={"image": ("photo.jpg", data)},
            data={"image_id": image_id},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert sorted(e["service"] for e in reply.json()) == ["color", "phash"]  # the others left out
    status = wait_complete(gateway.url, [1, 2], timeout=60)  # copies, similar, people: none waits
    assert all(step["status"] == "done" for step in status["1"]["steps"].values()), status["1"]
    groups = httpx.post(gateway.url + "/duplicate_groups", json={"kind": "copies"}, timeout=60).json()
    assert [sorted(m["image_id"] for m in g["members"]) for g in groups["groups"]] == [[1, 2]]

    moments = httpx.post(gateway.url + "/moments", json={}, timeout=60)
    assert moments.status_code == 503
    detail = moments.json()["detail"]
    assert "could not start image_text (model weights missing" in detail and "name another source" in detail
