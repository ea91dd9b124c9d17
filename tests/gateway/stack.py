"""A real ambience stack for gateway tests: services and the gateway as processes, a real database."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.registry import SERVICES
from tests.helpers import ServiceProcess, encode, synthetic_image
from tests.pg import TestServer

TINY_CLIP = Path(__file__).parents[1] / "models" / "tiny-clip.json"
#: Small OCR work per image so tests stay fast on two cores; RootSIFT needs no downloaded weights.
SERVICE_ENV = {
    "ocr": {"AMBIENCE_OCR_MAX_SIDE": "640", "AMBIENCE_OCR_THREADS": "1"},
    "local_features": {"AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": "rootsift"},
    # A tiny random CLIP: text and image search work end to end without downloadable weights.
    "image_text": {
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_IMAGE_TEXT_MODEL": "tiny-clip",
        "AMBIENCE_IMAGE_TEXT_WEIGHTS": "random",
        "AMBIENCE_IMAGE_TEXT_MODEL_CONFIG_PATH": str(TINY_CLIP),
    },
}


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    gateway: ServiceProcess
    dsn: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url

    def stop(self) -> None:
        self.gateway.stop()
        for svc in self.services.values():
            svc.stop()

    def catalog(self, image_ids: list[int]) -> dict[str, Any]:
        reply = httpx.post(self.url + "/catalog_status", json={"image_ids": image_ids}, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def wait_complete(self, image_ids: list[int], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.catalog(image_ids)
            if all(status.get(str(i), {}).get("state") == "complete" for i in image_ids):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"not complete after {timeout}s: {status}")
            time.sleep(0.2)


def start_services(tmp: Path, dsn: str, names: list[str]) -> dict[str, ServiceProcess]:
    """The services ``names`` as processes (data under ``tmp/<name>``), all started or none."""
    services: dict[str, ServiceProcess] = {}
    try:
        for name in names:
            info = SERVICES[name]
            env = {"AMBIENCE_PG_DSN": dsn, **SERVICE_ENV.get(name, {})}
            services[name] = ServiceProcess(info.module, info.env_prefix, tmp / name, extra_env=env).start()
    except BaseException:
        for svc in services.values():
            svc.stop()
        raise
    return services


def start_stack(
    tmp: Path, pg_server: TestServer, names: list[str], gateway_env: dict[str, str] | None = None
) -> Stack:
    dsn = pg_server.new_database("gateway")
    services = start_services(tmp, dsn, names)
    try:
        env = {
            "AMBIENCE_PG_DSN": dsn,
            "AMBIENCE_GATEWAY_SERVICES": json.dumps(names),
            "AMBIENCE_GATEWAY_SERVICE_URLS": json.dumps({n: s.url for n, s in services.items()}),
            "AMBIENCE_GATEWAY_RETRY_INTERVAL_S": "0.2",
            "AMBIENCE_GATEWAY_RETRY_BACKOFF_S": "0.2",
            "AMBIENCE_GATEWAY_RETRY_BACKOFF_MAX_S": "1.0",
            "AMBIENCE_GATEWAY_RUNNER_STATE_DIR": str(tmp / "run"),
            **(gateway_env or {}),
        }
        gateway = ServiceProcess("gateway", "AMBIENCE_GATEWAY_", tmp / "gateway", extra_env=env).start()
    except BaseException:
        for svc in services.values():
            svc.stop()
        raise
    return Stack(services, gateway, dsn, env)


def add_generated(url: str, image_id: int) -> dict[str, dict[str, str]]:
    """Add a generated picture through the gateway; the per-service outcomes by service name."""
    reply = httpx.post(
        url + "/calculate_all_image_features",
        files={"image": ("document", encode(synthetic_image(image_id, (200, 150))))},
        data={"image_id": str(image_id)},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return {e["service"]: e for e in reply.json()}
