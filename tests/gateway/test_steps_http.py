"""The add path over real HTTP: the add answers once the services have stored the image, its facts,
thumbnail and duplicate links follow as steps (each service gets the upload once: the links are
searched by stored id), and a gateway killed -9 in the middle of an index run loses none of it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.pg import TestServer
from ambience_support.processes import ambience_command
from ambience_support.stacks import GatewayStack, start_stack

NAMES = ["phash", "color", "local_features"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("steps"), pg_server, NAMES)
    yield st
    st.stop()


def requests_to(url: str, route: str) -> float:
    """How many requests a service's Prometheus metrics count for ``route``."""
    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ambience_requests_total") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_add_is_followed_by_its_steps_and_each_service_gets_the_upload_once(
    stack: GatewayStack,
) -> None:
    by_image = {n: f"/{n}_get_similar_images_by_image_buffer" for n in stack.services}
    before = {n: requests_to(s.url, by_image[n]) for n, s in stack.services.items()}
    source = synthetic_image(11, (320, 240))
    for image_id, data in (
        (1, encode(source, quality=95)),
        (2, encode(source.resize((240, 180)), quality=70)),
    ):
        reply = httpx.post(
            stack.url + "/calculate_all_image_features",
            files={"image": (f"{image_id}.jpg", data)},
            data={"image_id": str(image_id)},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert all(part["status"] in ("ok", "queued") for part in reply.json())
    status = stack.wait_complete([1, 2])
    assert list(status["1"]["steps"]) == [
        "facts",
        "place",
        "thumbnail",
        "sharpness",
        "copies",
        "similar",
        "bursts",
    ]
    assert all(s["status"] == "done" for s in status["1"]["steps"].values())
    assert httpx.get(stack.url + "/thumbnails/2", timeout=10).status_code == 200
    info = httpx.post(stack.url + "/image_info", json={"image_ids": [2]}, timeout=10).json()
    assert info["2"]["file_name"] == "2.jpg" and info["2"]["width"] == 240
    groups = httpx.post(stack.url + "/duplicate_groups", json={"kind": "copies"}, timeout=30).json()
    assert [sorted(m["image_id"] for m in g["members"]) for g in groups["groups"]] == [[1, 2]]
    # no service was sent the upload a second time to find the links: they searched by id
    for name, service in stack.services.items():
        assert requests_to(service.url, by_image[name]) == before[name], name
    stats = httpx.get(stack.url + "/catalog_stats", timeout=10).json()
    assert stats["pending_steps"] == {} and stats["failed_steps"] == {}
    health = httpx.get(stack.url + "/health", timeout=10).json()
    assert health["catalog"]["pending_steps"] == {}


@pytest.mark.slow
def test_a_gateway_killed_during_an_index_run_leaves_every_image_complete(
    stack: GatewayStack, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(40):
        (folder / f"{n:03d}.jpg").write_bytes(encode(synthetic_image(100 + n, (200, 150))))
    mapping = tmp_path / "ids.csv"
    command = ambience_command("index", str(folder), "--gateway", stack.url, "--mapping", str(mapping))
    command += ["--start-id", "1000", "--concurrency", "4"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill -9 once some images are acknowledged, not all
        stats = httpx.get(stack.url + "/catalog_stats", timeout=10).json()
        if stats["images"] >= 8:
            break
        time.sleep(0.05)
    stack.gateway.kill()
    stack.gateway.start()  # as `ambience serve` restarts it; the index run's retries go on
    first = run.communicate(timeout=600)[0]
    assert run.returncode == 0, first
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # resumes: all there
    assert again.returncode == 0, again.stdout + again.stderr
    assert "skipped: 40" in again.stdout, again.stdout
    ids = list(range(1000, 1040))
    status = stack.wait_complete(ids, timeout=120)
    assert all(status[str(i)]["state"] == "complete" for i in ids)
    for image_id in ids:
        assert httpx.get(f"{stack.url}/thumbnails/{image_id}", timeout=10).status_code == 200
        steps = status[str(image_id)]["steps"]
        assert all(s["status"] == "done" for s in steps.values()), steps
    info = httpx.post(stack.url + "/image_info", json={"image_ids": ids}, timeout=10).json()
    assert sorted(map(int, info)) == ids
    spool = Path(stack.gateway.env["AMBIENCE_GATEWAY_DATA_DIR"]) / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []
