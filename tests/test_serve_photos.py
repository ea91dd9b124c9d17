"""`ambience serve` brings up phash and color; real photographs go in over HTTP and come back."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import ImageOps

from ambience_support.images import encode
from ambience_support.photos import REPO, load_rgb
from ambience_support.processes import free_port

#: Left out of day-to-day runs (pytest -m "not slow"): `ambience serve` over the photos.
pytestmark = pytest.mark.slow

SERVICES = {"phash": "phash", "color": "color"}  # name -> search route prefix
CLIENTS = 4  # requests in flight
STORE_ROUTES = {"phash": "phash_features", "color": "color_features"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("serve-data")
    ports = {name: free_port() for name in SERVICES}
    env = {**os.environ, **{f"AMBIENCE_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
    only = [arg for name in SERVICES for arg in ("--service", name)]  # the rest is never asked
    proc = subprocess.Popen(
        [sys.executable, "-m", "ambience", "serve", *only, "--data-dir", str(data)],
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    deadline = time.monotonic() + 60
    try:
        for url in urls.values():
            while True:
                assert proc.poll() is None, "ambience serve exited"
                assert time.monotonic() < deadline, f"{url} never became healthy"
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        yield urls
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert (data / "phash" / "index.snapshot").exists(), "a clean stop snapshots the index"


def copies_of(indexed: dict[int, Path]) -> dict[int, set[int]]:
    """Ids of byte-identical files (the photo set has a few); any of them is a right answer."""
    by_digest: dict[str, set[int]] = {}
    for image_id, path in indexed.items():
        by_digest.setdefault(hashlib.md5(path.read_bytes()).hexdigest(), set()).add(image_id)
    return {image_id: group for group in by_digest.values() for image_id in group}


@pytest.fixture(scope="module")
def indexed(stack: dict[str, str], photos: list[Path]) -> dict[int, Path]:
    def add(item: tuple[int, Path]) -> None:
        image_id, path = item
        data = path.read_bytes()
        with httpx.Client(timeout=60) as client:
            for name, url in stack.items():
                r = client.post(
                    f"{url}/calculate_{STORE_ROUTES[name]}",
                    files={"image": (path.name, data)},
                    data={"image_id": str(image_id)},
                )
                assert r.status_code == 200, (name, path, r.text)

    # a few photos at once: both services (and this process's encoding) keep both cores busy
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(add, enumerate(photos)))
    return dict(enumerate(photos))


def search(url: str, route: str, data: bytes, **form: object) -> list[dict]:
    r = httpx.post(
        f"{url}/{route}_get_similar_images_by_image_buffer",
        files={"image": ("q.jpg", data)},
        data={k: str(v) for k, v in form.items()},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_every_photo_comes_back_first_by_image_and_by_id(
    stack: dict[str, str], indexed: dict[int, Path]
) -> None:
    same = copies_of(indexed)

    def check(item: tuple[int, Path]) -> None:
        image_id, path = item
        for name, route in SERVICES.items():
            top = search(stack[name], route, path.read_bytes(), k=3)[0]
            assert top["image_id"] in same[image_id], (name, path.name, top)
            by_id = httpx.post(
                f"{stack[name]}/{route}_get_similar_images_by_id",
                json={"image_id": image_id, "k": 3},
                timeout=60,
            ).json()
            assert by_id[0]["image_id"] in same[image_id]
            if name == "phash":
                assert top["distance"] == 0 and by_id[0]["distance"] == 0

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(check, indexed.items()))
    stats = httpx.get(stack["phash"] + "/stats").json()
    assert stats["count"] == len(indexed) == stats["index"]["entries"]


def test_transformed_copies_are_found(stack: dict[str, str], indexed: dict[int, Path]) -> None:
    same = copies_of(indexed)

    def misses_of(item: tuple[int, Path]) -> list[tuple[str, str]]:
        image_id, path = item
        missed = []
        img = load_rgb(path)
        mirrored = search(
            stack["phash"], "phash", encode(ImageOps.mirror(img), quality=90), distance_threshold=64
        )
        if not same[image_id] & {h["image_id"] for h in mirrored}:
            missed.append(("phash mirror", path.name))
        thumb = img.resize((max(img.width // 4, 8), max(img.height // 4, 8)))
        copies = {"jpeg q30": encode(img, quality=30), "1/4-size thumbnail": encode(thumb, quality=90)}
        for label, data in copies.items():
            for name, route in SERVICES.items():
                if search(stack[name], route, data, k=1)[0]["image_id"] not in same[image_id]:
                    missed.append((f"{name} {label}", path.name))
        return missed

    misses: dict[str, list[str]] = {}
    with ThreadPoolExecutor(CLIENTS) as pool:
        for missed in pool.map(misses_of, indexed.items()):
            for label, name in missed:
                misses.setdefault(label, []).append(name)
    assert not misses, misses
