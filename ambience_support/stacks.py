"""Whole stacks as processes, their service list from services.registry:

- :func:`start_services`, :func:`launch_stack` / :func:`start_stack`: the named services (and the
  gateway), each its own process on a free port, over a given PostgreSQL database (gateway tests
  and benches);
- :class:`ServeStack`: ``ambience serve`` in a temporary data dir, exactly as a user runs it (the
  evaluation).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from ambience_support.images import encode, synthetic_image
from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess, free_port
from ambience_support.tiny_models import TINY_IMAGE_TEXT
from services.registry import SERVICES

#: Per service, settings that keep test stacks fast on two cores: small OCR work per image; RootSIFT
#: needs no downloaded weights; a tiny random CLIP lets text and image search work end to end
#: without downloadable weights. Settings objects take them as they are (ambience_support.inprocess);
#: processes get them as environment variables (:data:`QUICK_SERVICE_ENV`).
QUICK_SERVICE_SETTINGS: dict[str, dict[str, Any]] = {
    "ocr": {"max_side": 640, "threads": 1},
    "local_features": {"descriptor": "rootsift"},
    "image_text": dict(TINY_IMAGE_TEXT),
}
#: Quick retries, so tests of the retry worker wait fractions of a second.
QUICK_GATEWAY_SETTINGS: dict[str, Any] = {
    "retry_interval_s": 0.2,
    "retry_backoff_s": 0.2,
    "retry_backoff_max_s": 1.0,
}


def settings_env(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """Settings values as the environment variables a process reads them from (lists and dicts as
    JSON)."""
    return {
        f"{prefix}{key.upper()}": json.dumps(value) if isinstance(value, list | dict) else str(value)
        for key, value in values.items()
    }


QUICK_SERVICE_ENV = {
    name: {
        **settings_env(SERVICES[name].env_prefix, values),
        **({"AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1"} if values.get("weights") == "random" else {}),
    }
    for name, values in QUICK_SERVICE_SETTINGS.items()
}
QUICK_GATEWAY_ENV = settings_env("AMBIENCE_GATEWAY_", QUICK_GATEWAY_SETTINGS)


class DatabaseServer(Protocol):
    """A PostgreSQL server that hands out fresh databases (ambience_support.pg.TestServer)."""

    def new_database(self, label: str = "db") -> str: ...


@dataclass
class GatewayStack:
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
        return catalog_status(self.url, image_ids)

    def wait_complete(self, image_ids: list[int], timeout: float = 60) -> dict[str, Any]:
        return wait_complete(self.url, image_ids, timeout)


def catalog_status(url: str, image_ids: list[int]) -> dict[str, Any]:
    reply = httpx.post(url + "/catalog_status", json={"image_ids": image_ids}, timeout=30)
    reply.raise_for_status()
    return dict(reply.json())


def wait_complete(url: str, image_ids: list[int], timeout: float = 60) -> dict[str, Any]:
    """Wait until the gateway at ``url`` has finished ``image_ids``: every service stores them and
    the steps that follow their adds (facts, thumbnail, duplicate links) are done."""
    deadline = time.monotonic() + timeout
    while True:
        status = catalog_status(url, image_ids)
        if all(status.get(str(i), {}).get("state") == "complete" for i in image_ids):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"not complete after {timeout}s: {status}")
        time.sleep(0.05)


def start_services(
    tmp: Path, dsn: str, names: list[str], service_env: dict[str, dict[str, str]] | None = None
) -> dict[str, ServiceProcess]:
    """Registered services ``names`` as processes (data under ``tmp/<name>``), all started or none;
    ``service_env`` per service, default :data:`QUICK_SERVICE_ENV`."""
    service_env = QUICK_SERVICE_ENV if service_env is None else service_env
    services: dict[str, ServiceProcess] = {}
    try:
        for name in names:
            env = {"AMBIENCE_PG_DSN": dsn, **service_env.get(name, {})}
            services[name] = ServiceProcess.registered(name, tmp / name, extra_env=env).start()
    except BaseException:
        for svc in services.values():
            svc.stop()
        raise
    return services


def launch_stack(
    tmp: Path,
    dsn: str,
    names: list[str],
    gateway_env: dict[str, str] | None = None,
    service_env: dict[str, dict[str, str]] | None = None,
) -> GatewayStack:
    """Registered services ``names`` and the gateway fanning out to them, data under ``tmp``;
    ``service_env`` per service (default: none)."""
    services = start_services(tmp, dsn, names, service_env or {})
    try:
        env = {
            "AMBIENCE_PG_DSN": dsn,
            "AMBIENCE_GATEWAY_SERVICES": json.dumps(names),
            "AMBIENCE_GATEWAY_SERVICE_URLS": json.dumps({n: s.url for n, s in services.items()}),
            **(gateway_env or {}),
        }
        gateway = ServiceProcess("gateway", "AMBIENCE_GATEWAY_", tmp / "gateway", extra_env=env).start()
    except BaseException:
        for svc in services.values():
            svc.stop()
        raise
    return GatewayStack(services, gateway, dsn, env)


def start_stack(
    tmp: Path, pg_server: DatabaseServer, names: list[str], gateway_env: dict[str, str] | None = None
) -> GatewayStack:
    """A test stack: a fresh database on ``pg_server``, quick settings (see the constants above)."""
    env = {**QUICK_GATEWAY_ENV, "AMBIENCE_GATEWAY_RUNNER_STATE_DIR": str(tmp / "run"), **(gateway_env or {})}
    return launch_stack(tmp, pg_server.new_database("gateway"), names, env, QUICK_SERVICE_ENV)


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


class ServeStack:
    """``ambience serve --data-dir DIR`` as a child process; ``url`` is the gateway."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        from gateway.settings import SEARCH_SERVICES

        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AMBIENCE_GATEWAY_PORT": str(self.port), **(extra_env or {})}
        env.pop("AMBIENCE_PG_DSN", None)  # our own embedded server, never someone's database
        for name in SERVICES:
            env[f"{SERVICES[name].env_prefix}PORT"] = str(free_port())
        # Fan out to the search services only: the evaluation measures image search; OCR of every
        # original would cost minutes and change no result list (OCR has its own benchmark).
        searchable = [s for s in SEARCH_SERVICES if s in SERVICES]
        env.setdefault("AMBIENCE_GATEWAY_SERVICES", json.dumps(searchable))
        self.env = env
        self.log = data_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> dict[str, Any]:
        """Start and wait until every enabled service is up or reported unavailable; returns /health."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ambience", "serve", "--data-dir", str(self.data_dir)],
            env=self.env,
            cwd=REPO,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ambience serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(self.url + "/health", timeout=5)
                health = r.json()
                states = [s.get("status") for s in health.get("services", {}).values()]
                if states and all(s in ("up", "unavailable") for s in states):
                    return health
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the stack did not come up in {timeout:.0f}s: {health}\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the runner stops its children and PostgreSQL
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ServeStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def up_services(health: dict[str, Any]) -> dict[str, str]:
    """Service -> "up" or the reason it is not (from the gateway's /health)."""
    out = {}
    for name, entry in health.get("services", {}).items():
        out[name] = "up" if entry.get("status") == "up" else f"{entry.get('status')}: {entry.get('detail')}"
    return out
