"""``POST /duplicate_groups/rebuild {"kind": "copies"}`` after a bulk import, over real HTTP: real
phash, color and local_features (RootSIFT) services, a gateway, a real catalog (in-process,
ambience_support.inprocess; as processes where local_features is paused with SIGSTOP). The photos and their
copies are written to the services directly, as ``ambience import`` does: the gateway has no add-time
links, so only the rebuild's search of every stored image can find the crops (phash puts an 80% crop
as far from its source as another photo), and the mirrors only through the mirrored stored hashes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.link_replicas import added, deleted, grouped, replica
from ambience_support.pg import TestServer
from ambience_support.photos import load_rgb
from ambience_support.stacks import GatewayStack, start_stack
from ambience_support.transforms import source_bytes, variants
from services.registry import SERVICES

#: Left out of day-to-day runs (pytest -m "not slow"): copies rebuilds over local_features processes.
pytestmark = pytest.mark.slow

STORED = ("phash", "color", "local_features")
#: Two textured photos: dozens of inliers between each and its 80% crop (benchmarks.md).
PHOTOS = ("Barn_Grafitti.jpg", "Alpine_lake.jpg")
#: photo 1: source, JPEG-30 copy (phash links it), crop; photo 2: source, crop, mirror (phash links
#: it through the mirror of the stored hash)
SOURCE_A, JPEG_A, CROP_A, SOURCE_B, CROP_B, MIRROR_B = 1, 2, 3, 4, 5, 6
COPIES = {JPEG_A: "jpeg30", CROP_A: "crop80", CROP_B: "crop80", MIRROR_B: "mirrored"}


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path, pg_server, list(STORED)) as st:
        yield st


@pytest.fixture
def process_stack(tmp_path: Path, pg_server: TestServer) -> Iterator[GatewayStack]:
    """Services as processes: local_features can be paused (SIGSTOP)."""
    st = start_stack(tmp_path, pg_server, list(STORED))
    yield st
    st.stop()


def import_directly(stack: GatewayStack | InProcessStack, photos: list[Path]) -> None:
    """The two photos and their copies stored past the gateway (:func:`store_directly`)."""
    by_name = {p.name: p for p in photos}
    missing = [n for n in PHOTOS if n not in by_name]
    assert not missing, f"the shared photos lack {missing}"
    images: dict[int, bytes] = {}
    for (source, copies), name in zip(
        ((SOURCE_A, (JPEG_A, CROP_A)), (SOURCE_B, (CROP_B, MIRROR_B))), PHOTOS, strict=True
    ):
        img = load_rgb(by_name[name])
        made = variants(img, seed=zlib.crc32(name.encode()))
        images[source] = source_bytes(img)
        for image_id in copies:
            images[image_id] = made[COPIES[image_id]]
    store_directly(stack, images)


def store_directly(stack: GatewayStack | InProcessStack, images: dict[int, bytes]) -> None:
    """Each image into every service's own /calculate route, past the gateway (as a bulk import)."""
    with httpx.Client(timeout=60) as client:
        for name in STORED:
            route = f"{stack.services[name].url}/calculate_{SERVICES[name].store}"
            for image_id, data in images.items():
                reply = client.post(route, files={"image": ("a.jpg", data)}, data={"image_id": str(image_id)})
                assert reply.status_code == 200, (name, reply.text)


def rebuild(url: str) -> httpx.Response:
    return httpx.post(url + "/duplicate_groups/rebuild", json={"kind": "copies"}, timeout=60)


def finish(url: str, timeout: float = 180) -> dict[str, Any]:
    """Ask again (as Retry-After says) until the rebuild answers with its result; every answer
    before it is a 202 with progress that never goes back."""
    deadline = time.monotonic() + timeout
    done = 0
    while True:
        reply = rebuild(url)
        if reply.status_code == 200:
            return reply.json()
        assert reply.status_code == 202, reply.text
        progress = reply.json()["progress"]
        assert done <= progress["done"] <= max(progress["total"], progress["done"])
        done = progress["done"]
        assert time.monotonic() < deadline, f"still running after {timeout}s: {reply.json()}"
        time.sleep(0.2)


def groups(url: str) -> list[list[int]]:
    reply = httpx.post(url + "/duplicate_groups", json={"kind": "copies"}, timeout=60)
    return sorted(sorted(m["image_id"] for m in g["members"]) for g in reply.json()["groups"])


def test_a_rebuild_finds_crops_among_images_the_gateway_never_added(
    photos: list[Path], process_stack: GatewayStack
) -> None:
    stack = process_stack
    import_directly(stack, photos)
    assert groups(stack.url) == []  # no add-time links: the gateway knows nothing yet
    local = stack.services["local_features"].proc
    assert local is not None
    # Paused, local_features cannot answer the listing of its images: the rebuild is still running
    # at every ask until it resumes.
    os.kill(local.pid, signal.SIGSTOP)
    try:
        first = rebuild(stack.url)
        assert first.status_code == 202 and first.headers["Retry-After"]
        assert first.json() == {
            "status": "running",
            "kind": "copies",
            "progress": {"phase": "pairs", "done": 0, "total": 0, "failed": 0},
        }
        again = rebuild(stack.url)
        assert again.status_code == 202 and again.json()["progress"]["done"] == 0
    finally:
        os.kill(local.pid, signal.SIGCONT)
    result = finish(stack.url)
    assert result["crops"] == {
        "complete": True,
        "images": 6,
        "searched": 6,
        "failed": 0,
        "links": result["crops"]["links"],
        "error": None,
    }
    assert result["crops"]["links"] >= 2
    assert groups(stack.url) == [[SOURCE_A, JPEG_A, CROP_A], [SOURCE_B, CROP_B, MIRROR_B]]
    # finished and answered: the next ask starts a new rebuild
    assert rebuild(stack.url).status_code == 202
    assert finish(stack.url)["crops"]["searched"] == 6
    # the command asks until the result, and says what it found
    done = groups_command(stack.url)
    assert done.returncode == 0, done.stderr
    assert "crops: 6 of 6 images searched" in done.stdout
    assert groups(stack.url) == [[SOURCE_A, JPEG_A, CROP_A], [SOURCE_B, CROP_B, MIRROR_B]]


def groups_command(url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ambience", "groups", "rebuild", "--kind", "copies", "--gateway", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_without_local_features_a_rebuild_keeps_the_phash_links_and_says_so(
    photos: list[Path], stack: InProcessStack
) -> None:
    import_directly(stack, photos)
    stack.services["local_features"].stop()
    assert rebuild(stack.url).status_code == 202
    result = finish(stack.url)
    crops = result["crops"]
    assert crops["complete"] is False and crops["searched"] == 0
    assert "local_features" in crops["error"]
    assert result["links"] == 2  # the JPEG copy and the mirror, over the stored hashes
    assert groups(stack.url) == [[SOURCE_A, JPEG_A], [SOURCE_B, MIRROR_B]]
    done = groups_command(stack.url)
    assert done.returncode == 1
    assert "2 links from phash; crops not searched: local_features could not list" in done.stdout


def test_imported_images_join_the_groups_and_a_rebuild_never_relinks_an_image_deleted_meanwhile(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The catalog's side, on two replicas of one catalog (no services): images the gateway never
    added are group members through their links, on every replica, through a whole load and through
    the change log alike; links to an image deleted (through the other replica) while a rebuild
    computed them are not written."""

    async def scenario() -> None:
        async with replica(tmp_path, pg_dsn) as a, replica(tmp_path, pg_dsn) as b:
            await asyncio.to_thread(added, a, 1, [])
            assert await grouped(b) == []
            started = await asyncio.to_thread(a.links.generation, "copies")
            await asyncio.to_thread(deleted, b, 1)  # while A's rebuild computes
            links = [(1, 100, 5.0), (100, 101, 0.0), (102, 103, 3.0)]  # 100-103 imported
            written = await asyncio.to_thread(a.links.replace, "copies", links, started)
            assert written == 2
            assert await grouped(a) == await grouped(b) == [[100, 101], [102, 103]]
            # an add linked to an imported image joins its group, applied from the log
            await asyncio.to_thread(added, b, 5, [(101, 7.0)])
            assert await grouped(a) == await grouped(b) == [[5, 100, 101], [102, 103]]
            assert a.group_refreshes["changes"] == 1
            async with replica(tmp_path, pg_dsn) as restarted:
                assert await grouped(restarted) == [[5, 100, 101], [102, 103]]

    asyncio.run(scenario())


def test_a_rebuild_aligns_the_thumbnails_of_imported_smooth_pictures(
    photos: list[Path], stack: InProcessStack
) -> None:
    """A crop of a smooth wallpaper keeps too few keypoints for local features: the rebuild finds it
    by aligning thumbnails, once the imported images have them (``POST /thumbnails/{id}``, what the
    web page needs too)."""
    name = "Mesh_Gradient_by_Jazil_T_S.jpg"
    path = next((p for p in photos if p.name == name), None)
    assert path is not None, f"the shared photos lack {name}"
    img = load_rgb(path)
    images = {1: source_bytes(img), 2: variants(img, seed=zlib.crc32(name.encode()))["crop80"]}
    store_directly(stack, images)
    with httpx.Client(timeout=60) as client:
        rebuild(stack.url)
        result = finish(stack.url)
        assert result["aligned"] == 0 and groups(stack.url) == []  # no thumbnails yet
        for image_id, data in images.items():
            made = client.post(f"{stack.url}/thumbnails/{image_id}", files={"image": ("a.jpg", data)})
            assert made.status_code == 200, made.text
    rebuild(stack.url)
    result = finish(stack.url)
    assert result["aligned"] == 1
    assert groups(stack.url) == [[1, 2]]
