"""A service as a real process (``python -m module``) on a free port, as tests and benches run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ambience_support.photos import REPO
from services.registry import SERVICES


def ambience_command(*args: str) -> list[str]:
    """The ``ambience`` CLI of this checkout, as a command line for a child process."""
    return [sys.executable, "-m", "ambience", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """A service running as a real process (``python -m module``) on a free port."""

    def __init__(
        self,
        module: str,
        env_prefix: str,
        data_dir: Path,
        extra_env: dict[str, str] | None = None,
        guard_extras: list[str] | None = None,
    ):
        """``guard_extras``: run it as its container image would, with only the distributions of
        those pyproject extras and the project's packages importable (ambience_support.extras)."""
        self.module = module
        self.guard_extras = guard_extras
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            f"{env_prefix}PORT": str(self.port),
            f"{env_prefix}DATA_DIR": str(data_dir),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{module}.{self.port}.log"

    @classmethod
    def registered(cls, name: str, data_dir: Path, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        """Registered service ``name`` (its descriptor: module and env prefix)."""
        descriptor = SERVICES[name]
        return cls(descriptor.module, descriptor.env_prefix, data_dir, extra_env)

    def start(self, timeout: float = 60) -> ServiceProcess:
        return self.launch().wait_healthy(timeout)

    def launch(self) -> ServiceProcess:
        """Start the process without waiting for it (:meth:`wait_healthy` waits)."""
        command, env, cwd = [sys.executable, "-m", self.module], self.env, REPO
        if self.guard_extras is not None:
            from ambience_support.extras import image_site

            site = image_site(self.guard_extras, self.log.parent / f"site-{'-'.join(self.guard_extras)}")
            command = [sys.executable, "-S", "-m", self.module]
            # the working directory is sys.path[0]: neither the repository nor the site itself
            # (a package that re-imports its native part would find its own folder again there)
            env, cwd = {**env, "PYTHONPATH": str(site)}, self.log.parent
        logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, timeout: float = 60) -> ServiceProcess:
        """Wait until /health answers 200 (RuntimeError when the process exits first)."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        # One client for every poll: a new one per call (httpx.get) builds an SSL context each time,
        # ~20 ms of CPU per poll that competes with the starting service.
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.module} exited with {self.proc.returncode}:\n{self.log.read_text()}"
                    )
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"{self.module} did not become healthy:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextmanager
def running_service(module: str, env_prefix: str, data_dir: Path, **kw: object) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(module, env_prefix, data_dir, **kw).start()  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        svc.stop()
