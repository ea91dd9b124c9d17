"""Run the whole stack for the evaluation: ``ambience serve`` in a temporary data dir, every service
and the gateway on free ports, the embedded PostgreSQL, exactly as a user would run it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.settings import SEARCH_SERVICES
from services.registry import SERVICES

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """``ambience serve --data-dir DIR`` as a child process; ``url`` is the gateway."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
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

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def up_services(health: dict[str, Any]) -> dict[str, str]:
    """Service -> "up" or the reason it is not (from the gateway's /health)."""
    out = {}
    for name, entry in health.get("services", {}).items():
        out[name] = "up" if entry.get("status") == "up" else f"{entry.get('status')}: {entry.get('detail')}"
    return out
