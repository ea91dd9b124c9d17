"""deploy/compose.scale.yml (the override for replicas on PostgreSQL): it validates against the Compose
Specification, merges onto compose.yml, and every stateful service in it runs as replicas on the
postgres store, each replica with its own /data, after PostgreSQL (with pgvector) is healthy."""

from __future__ import annotations

from typing import Any

import pytest

from ambience_support.compose import COMPOSE, DEPLOY, check_jsonschema, interpolate, load
from services.common.models.embedding import EmbeddingSettings
from services.registry import SERVICES

SCALE = DEPLOY / "compose.scale.yml"
#: The services whose truth is a feature store (captioner and tagger keep none; ocr and the gateway
#: already keep theirs in PostgreSQL).
STORES = {"phash", "color", "local_features", "global_features", "image_text", "faces"}
PGVECTOR_CAPABLE = {"global_features", "image_text"}


@pytest.fixture(scope="module")
def scale() -> dict[str, Any]:
    return load(SCALE)


def test_scale_override_validates_with_the_base_file() -> None:
    result = check_jsonschema(COMPOSE, SCALE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stateful_service_runs_as_replicas_on_the_postgres_store(scale: dict[str, Any]) -> None:
    base = load(COMPOSE)["services"]
    services = scale["services"]
    assert set(services) == STORES | {"postgres"}
    for name in STORES:
        svc, prefix = services[name], SERVICES[name].env_prefix
        assert name in base, f"{name} is not in compose.yml"
        env = svc["environment"]
        assert env[f"{prefix}STORE"] == "postgres", name
        assert interpolate(env["AMBIENCE_PG_DSN"]) == "postgresql://ambience:ambience@postgres:5432/ambience"
        assert int(interpolate(str(svc["deploy"]["replicas"]))) >= 2, name
        assert int(interpolate(str(svc["deploy"]["replicas"]), {f"{prefix}REPLICAS": "5"})) == 5, name
        # An anonymous volume per replica replaces the named one (same target): replicas never
        # share snapshots or trained state.
        assert svc["volumes"] == ["/data"], name
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        # the override's depends_on replaces the base's: the model services still wait for weights
        for dep, cond in base[name].get("depends_on", {}).items():
            assert svc["depends_on"][dep] == cond, f"{name} lost its dependency on {dep}"
        index = env.get(f"{prefix}INDEX")
        if name in PGVECTOR_CAPABLE:
            assert interpolate(index) == "faiss"
            assert interpolate(index, {f"{prefix}INDEX": "pgvector"}) == "pgvector"
        else:
            assert index is None


def test_postgres_has_pgvector(scale: dict[str, Any]) -> None:
    pg = scale["services"]["postgres"]
    assert pg["image"].startswith("pgvector/pgvector:pg18")
    (mount,) = pg["volumes"]
    source, target, _ = mount.split(":")
    assert (DEPLOY / source).read_text().count("CREATE EXTENSION IF NOT EXISTS vector") == 1
    assert target.startswith("/docker-entrypoint-initdb.d/")


def test_postgres_shared_memory_holds_a_parallel_hnsw_build(scale: dict[str, Any]) -> None:
    # The build's graph lives in /dev/shm; Docker's 64 MiB default would fail it.
    size = interpolate(scale["services"]["postgres"]["shm_size"]).lower()
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    shm_bytes = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    build_cap_mb = EmbeddingSettings.model_fields["pgvector_build_memory_mb"].default
    assert shm_bytes > build_cap_mb * 2**20
