"""Replicas of a service on the PostgreSQL store, as separate processes: how tests start them, talk
to them and wait for them (tests/common/test_replicas.py, tests/importer/test_dask_import.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ambience_support.images import encode
from ambience_support.processes import ServiceProcess
from ambience_support.textured import textured_image
from services.registry import SERVICES


@dataclass(frozen=True)
class Kind:
    name: str
    add: str
    delete: str
    by_image: str
    env: dict[str, str]
    image_size: tuple[int, int]


PHASH = Kind(
    "phash",
    "/calculate_phash_features",
    "/delete_phash_features",
    "/phash_get_similar_images_by_image_buffer",
    {},
    (160, 120),
)
LOCAL = Kind(
    "local_features",
    "/calculate_local_features",
    "/delete_local_features",
    "/local_features_get_similar_images_by_image_buffer",
    {"AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": "rootsift"},
    (320, 240),
)


def picture(seed: int, kind: Kind) -> bytes:
    # textured: smooth generated pictures give SIFT too few keypoints to verify a match
    return encode(textured_image(seed, kind.image_size), quality=92)


def replica(kind: Kind, data_dir: Path, dsn: str, **extra: str) -> ServiceProcess:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = SERVICES[kind.name].env_prefix
    env = {"AMBIENCE_PG_DSN": dsn, f"{prefix}STORE": "postgres", **kind.env, **extra}
    return ServiceProcess(SERVICES[kind.name].module, prefix, data_dir, extra_env=env)


def add(url: str, kind: Kind, image_id: int, client: httpx.Client) -> httpx.Response:
    """Adds the picture of seed ``image_id`` under that id through the replica at ``url``."""
    files = {"image": ("x.jpg", picture(image_id, kind))}
    return client.post(url + kind.add, files=files, data={"image_id": str(image_id)})


def found(url: str, kind: Kind, seed: int, image_id: int, client: httpx.Client) -> bool:
    reply = client.post(url + kind.by_image, files={"image": ("q.jpg", picture(seed, kind))}, data={"k": "3"})
    reply.raise_for_status()
    return any(hit["image_id"] == image_id for hit in reply.json())


def generations(url: str, client: httpx.Client) -> tuple[int, int]:
    """(the shared store's write generation, the generation the replica's index has applied)."""
    stats = client.get(url + "/stats").json()
    return int(stats["store"]["generation"]), int(stats["index"]["generation"])


def wait_until(check: object, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")
