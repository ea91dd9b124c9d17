"""Acknowledged writes survive kill -9; a valid snapshot is loaded instead of rebuilding.

How the test knows whether the index was rebuilt: /stats reports ``index.loaded_from``
("snapshot" or "rebuild") and ``index.replayed`` (change-log entries applied on top).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.processes import ServiceProcess

SERVICES = [
    ("services.phash", "AMBIENCE_PHASH_", "phash_features", "phash"),
    ("services.color", "AMBIENCE_COLOR_", "color_features", "color"),
]


@pytest.mark.parametrize(("module", "prefix", "store_route", "search_route"), SERVICES)
def test_kill_9_loses_no_acknowledged_write(
    tmp_path: Path, module: str, prefix: str, store_route: str, search_route: str
) -> None:
    data_dir = tmp_path / "data"
    # Snapshots only at shutdown, so the restart must recover from the store alone.
    env = {f"{prefix}SNAPSHOT_INTERVAL_S": "3600"}
    svc = ServiceProcess(module, prefix, data_dir, env).start()
    images = {i: encode(synthetic_image(i, (160, 120))) for i in range(40)}

    def add(item: tuple[int, bytes]) -> int | None:
        image_id, data = item
        r = httpx.post(
            f"{svc.url}/calculate_{store_route}",
            files={"image": ("a.jpg", data)},
            data={"image_id": str(image_id)},
            timeout=30,
        )
        return image_id if r.status_code == 200 else None

    with ThreadPoolExecutor(4) as pool:
        acked = {i for i in pool.map(add, images.items()) if i is not None}
    svc.kill()  # SIGKILL right after the last acknowledgement
    assert len(acked) == len(images)

    svc = ServiceProcess(module, prefix, data_dir, env).start()
    try:
        stats = httpx.get(svc.url + "/stats").json()
        assert stats["index"]["loaded_from"] == "rebuild"  # no snapshot was ever written
        assert stats["count"] == stats["index"]["entries"] == len(acked)
        for image_id in acked:
            r = httpx.post(
                f"{svc.url}/{search_route}_get_similar_images_by_id",
                json={"image_id": image_id, "k": 1},
                timeout=30,
            )
            assert r.status_code == 200 and r.json()[0]["image_id"] == image_id
    finally:
        svc.stop()  # graceful: writes a snapshot

    svc = ServiceProcess(module, prefix, data_dir, env).start()
    stats = httpx.get(svc.url + "/stats").json()
    assert stats["index"]["loaded_from"] == "snapshot"
    assert stats["index"]["replayed"] == 0
    # Writes after the snapshot are replayed from the store's change log after another kill -9.
    for image_id in (100, 101):
        assert add((image_id, encode(synthetic_image(image_id, (160, 120))))) == image_id
    assert httpx.post(f"{svc.url}/delete_{store_route}", json={"image_id": 0}).json()["deleted"]
    svc.kill()

    svc = ServiceProcess(module, prefix, data_dir, env).start()
    try:
        stats = httpx.get(svc.url + "/stats").json()
        assert stats["index"]["loaded_from"] == "snapshot"
        assert stats["index"]["replayed"] == 3
        assert stats["count"] == stats["index"]["entries"] == len(acked) + 1
        r = httpx.post(f"{svc.url}/{search_route}_get_similar_images_by_id", json={"image_id": 0, "k": 1})
        assert r.status_code == 404
    finally:
        svc.stop()
