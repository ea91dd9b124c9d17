"""Every service of ambience and the gateway as real processes, started at once, for hostile tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ambience_support.pg import TestServer
from ambience_support.processes import ServiceProcess
from ambience_support.tiny_models import TINY_CLIP, captioner_env, tagger_env, write_label_files
from services.common.descriptor import ServiceDescriptor
from services.registry import SERVICES

#: Uploads larger than this are refused; small, so oversized bodies are cheap to send.
UPLOAD_LIMIT = 4 << 20


#: Every registered service, in the registry's order.
SPECS: list[ServiceDescriptor] = list(SERVICES.values())


def image_route(spec: ServiceDescriptor) -> str | None:
    """The route of a storeless or text service that answers about one uploaded image."""
    return next((r for r in spec.extra_routes if r.startswith("/get_image_")), None)


def service_env(spec: ServiceDescriptor, models: Path, dsn: str) -> dict[str, str]:
    """Tiny models with random weights, one thread each, small upload limits."""
    p = spec.env_prefix
    env = {
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_PG_DSN": dsn,
        f"{p}MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }
    extra = {
        "local_features": {f"{p}DESCRIPTOR": "rootsift"},
        "global_features": {f"{p}MODEL": "test_vit", f"{p}WEIGHTS": "random"},
        "image_text": {
            f"{p}MODEL": "tiny-clip",
            f"{p}WEIGHTS": "random",
            f"{p}MODEL_CONFIG_PATH": str(TINY_CLIP),
        },
        "ocr": {f"{p}MAX_SIDE": "640", f"{p}THREADS": "1"},
        "captioner": captioner_env(models),
        "tagger": tagger_env(models),
    }
    return {**env, **extra.get(spec.name, {})}


@dataclass
class HostileStack:
    services: dict[str, ServiceProcess]
    gateway: ServiceProcess

    def all(self) -> dict[str, ServiceProcess]:
        return {**self.services, "gateway": self.gateway}


@contextmanager
def hostile_stack(
    tmp: Path, pg_server: TestServer, gateway_env: dict[str, str] | None = None
) -> Iterator[HostileStack]:
    dsn = pg_server.new_database("hostile")
    models = tmp / "models"
    write_label_files(models / "tagger")
    procs = {
        s.name: ServiceProcess.registered(s.name, tmp / s.name, extra_env=service_env(s, models, dsn))
        for s in SPECS
    }
    gateway: ServiceProcess | None = None
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda p: p.start(timeout=240), procs.values()))
        env = {
            "AMBIENCE_PG_DSN": dsn,
            "AMBIENCE_GATEWAY_SERVICES": json.dumps([s.name for s in SPECS]),
            "AMBIENCE_GATEWAY_SERVICE_URLS": json.dumps({n: p.url for n, p in procs.items()}),
            "AMBIENCE_GATEWAY_RUNNER_STATE_DIR": str(tmp / "run"),
            "AMBIENCE_GATEWAY_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            **(gateway_env or {}),
        }
        gateway = ServiceProcess("gateway", "AMBIENCE_GATEWAY_", tmp / "gateway", extra_env=env).start()
        yield HostileStack(procs, gateway)
    finally:
        for proc in procs.values():
            proc.stop()
        if gateway is not None:
            gateway.stop()
