"""`ambience serve` as a supervisor: a crashed service comes back (and the runner says so), children
die with the wrapper even on kill -9, and the exit code is non-zero when nothing requested runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ambience_support.photos import REPO
from ambience_support.processes import free_port


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_crashed_service_is_restarted_and_children_die_with_the_wrapper(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AMBIENCE_PHASH_PORT": str(port)}
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "ambience", "serve", "--service", "phash", "--data-dir", str(tmp_path)],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    try:
        wait_for(lambda: healthy(url), 60, "phash never became healthy")
        (first,) = children(wrapper.pid)
        seen.append(first)
        os.kill(first, signal.SIGKILL)  # a crash
        wait_for(lambda: children(wrapper.pid) and children(wrapper.pid) != [first], 30, "not restarted")
        wait_for(lambda: healthy(url), 60, "phash did not come back")
        restarts = json.loads((tmp_path / "run" / "phash.restarts").read_text())
        assert restarts["restarts"] == 1 and restarts["last_exit_code"] == -signal.SIGKILL
        (second,) = children(wrapper.pid)
        seen.append(second)

        wrapper.kill()  # kill -9 of the wrapper: its child must not be orphaned (it holds the port)
        wrapper.wait(timeout=10)
        wait_for(lambda: not alive(second), 30, "the service outlived the wrapper")
        wait_for(lambda: not healthy(url), 10, "the port is still served")
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
        for pid in seen:  # what this test started never outlives it, whatever failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        stderr = wrapper.stderr.read() if wrapper.stderr else ""
    assert "phash: exited with code -9; restarting in 1s" in stderr


def test_serve_exits_non_zero_when_nothing_requested_can_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AMBIENCE_TAGGER_PORT": str(free_port()),
        "AMBIENCE_MODELS_DIR": str(tmp_path / "models"),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
    }
    env.pop("AMBIENCE_ALLOW_RANDOM_WEIGHTS", None)
    env.pop("AMBIENCE_TAGGER_WEIGHTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ambience", "serve", "--service", "tagger", "--data-dir", str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert "nothing requested is running" in proc.stderr or "nothing to run" in proc.stderr
