"""Pictures and calls of the tests of /moments, /map and /duplicate_groups through a gateway
(tests/gateway/test_explore.py, test_replicas.py): the gateway settings that make color the vector
source, generated pictures whose phash survives resizing, an add that waits for its steps."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from PIL import Image

from ambience_support.stacks import settings_env, wait_complete

#: GatewaySettings values: color the vector source, no near shots unless a test asks for them.
SOURCES: dict[str, Any] = {
    "explore_sources": ["color"],
    "similar_distance": 0,
    # generated pictures are 250-290 bits from each other; a half-size copy ~80 from its source
    "duplicate_distance": 120,
}
#: :data:`SOURCES` as a gateway process reads them.
SOURCES_ENV = settings_env("AMBIENCE_GATEWAY_", SOURCES)


def textured(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Coarse random structure: phash bits that survive resizing and re-encoding."""
    grid = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize(size, Image.Resampling.BICUBIC)


def add(url: str, image_id: int, data: bytes, name: str = "photo.jpg") -> None:
    r = httpx.post(
        url + "/calculate_all_image_features",
        files={"image": (name, data)},
        data={"image_id": image_id},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert all(e["status"] in ("ok", "queued") for e in r.json()), r.text
    wait_complete(url, [image_id])  # its facts, thumbnail and links follow the add


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)
