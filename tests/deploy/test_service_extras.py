"""Every image of deploy/compose.yml starts with exactly the extras it is built with.

The test environment holds every extra at once, so an import of another extra's library (PostgreSQL's
driver in a service that never chooses PostgreSQL, torch in a light service) would pass every other
test and fail in the image. Here each compose service runs as a process that can import only what
``ambience[EXTRAS]`` installs (ambience_support/extras.py reads the installed distributions'
metadata: no network, no virtualenv to build) and must answer /health; the models job must list
what it would fetch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ambience_support.extras import image_site, requirement_closure
from ambience_support.offline import offline_service_env
from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess
from services.registry import SERVICES

#: Left out of day-to-day runs (pytest -m "not slow"): every image of deploy/ started with only its extras.
pytestmark = pytest.mark.slow

COMPOSE = REPO / "deploy" / "compose.yml"
#: Compose services that are not ambience images, and the one-shot models job (checked apart).
NOT_SERVED = {"postgres", "models"}
#: Services that keep their data in PostgreSQL whatever the settings (the catalog, the text index).
NEEDS_POSTGRES = {"ocr", "gateway"}


def compose_images() -> dict[str, list[str]]:
    """Compose service -> the extras its image is built with."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {
        name: svc["build"]["args"]["EXTRAS"].split(",") for name, svc in services.items() if "build" in svc
    }


def test_an_image_site_holds_its_extras_and_nothing_else(tmp_path: Path) -> None:
    closure = requirement_closure(["phash"])
    assert {"ambience", "faiss-cpu", "fastapi", "uvloop"} <= closure  # uvicorn[standard] brings uvloop
    assert "psycopg2-binary" not in closure and "torch" not in closure
    site = image_site(["phash"], tmp_path / "site")

    def run(code: str) -> subprocess.CompletedProcess[str]:
        env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [sys.executable, "-S", "-c", code], env=env, cwd=site, capture_output=True, text=True
        )

    assert run("import numpy, faiss, services.common.app, gateway, ambience").returncode == 0
    for missing in ("psycopg2", "torch", "cv2", "ambience_support", "tests"):
        result = run(f"import {missing}")
        assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, missing
    # a library probing for an optional module is told it is absent, as in the image
    assert (
        run("import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)").returncode
        == 0
    )


@pytest.fixture(scope="module")
def started(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every served compose image as a guarded process, launched together (their imports run in
    parallel) and then waited for: name -> the process, or the error it ended with."""
    tmp = tmp_path_factory.mktemp("images")
    models = tmp / "models"
    processes: dict[str, ServiceProcess] = {}
    for name, extras in compose_images().items():
        if name in NOT_SERVED:
            continue
        env = offline_service_env(name, models) if name in SERVICES else {}
        if name in NEEDS_POSTGRES:
            env["AMBIENCE_PG_DSN"] = pg_server.new_database(f"extras_{name}")
        if name == "gateway":
            env["AMBIENCE_GATEWAY_SERVICES"] = json.dumps(list(SERVICES))
            env["AMBIENCE_GATEWAY_RUNNER_STATE_DIR"] = str(tmp / "run")
            module, prefix = "gateway", "AMBIENCE_GATEWAY_"
        else:
            module, prefix = SERVICES[name].module, SERVICES[name].env_prefix
        processes[name] = ServiceProcess(module, prefix, tmp / name, env, guard_extras=extras).launch()
    outcome: dict[str, Any] = {}
    try:
        for name, process in processes.items():
            try:
                outcome[name] = process.wait_healthy(timeout=180)
            except (RuntimeError, TimeoutError) as exc:
                outcome[name] = exc
        yield outcome
    finally:
        for process in processes.values():
            process.stop()


@pytest.mark.parametrize("image", sorted(set(compose_images()) - NOT_SERVED))
def test_each_image_starts_with_only_its_extras(image: str, started: dict[str, Any]) -> None:
    outcome = started[image]
    assert isinstance(outcome, ServiceProcess), (
        f"{image} does not start with its extras:\n{str(outcome)[-3000:]}"
    )


def test_the_models_job_lists_its_files_with_only_its_extras(tmp_path: Path) -> None:
    site = image_site(compose_images()["models"], tmp_path / "site")
    env = {
        "PYTHONPATH": str(site),
        "PATH": "/usr/bin:/bin",
        "AMBIENCE_MODELS_DIR": str(tmp_path / "models"),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
    }
    result = subprocess.run(
        [sys.executable, "-S", "-m", "ambience", "models", "list"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    # exit 1: files are missing (nothing was fetched); every service whose extra the job installs is
    # planned (a service whose weights ship in its own package, faces, is not the job's)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stdout + result.stderr
    extras = set(compose_images()["models"])
    planned = [n for n, info in SERVICES.items() if (info.model or info.weights) and info.extra in extras]
    assert set(planned) == {"local_features", "global_features", "image_text", "captioner", "tagger"}
    blocks: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line and not line.startswith(" "):
            name = line.rstrip(":")
            blocks[name] = ""
        elif blocks:
            blocks[name] += line + "\n"
    for name in planned:
        assert name in blocks and "missing Python modules" not in blocks[name], result.stdout
