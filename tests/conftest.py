from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ambience_support.caltech import CaltechCollection, build_caltech_collection
from ambience_support.pg import TestServer, start_test_server
from ambience_support.photos import PHOTOS, photo_paths
from ambience_support.workers import auto_workers, run_folder


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): see ambience_support/workers.py."""
    return auto_workers()


@pytest.fixture(scope="session", autouse=True)
def shared_onnx_exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """global_features and image_text run runtime onnx on CPU by default, exporting each model once
    (a child process importing torch: seconds): every test's services, in this process or started as
    processes, in every worker of the run, share one export folder, keyed by the model settings (an
    export holds a lock on its file: a worker that needs the same model waits and reads it)."""
    if "AMBIENCE_ONNX_DIR" in os.environ:
        yield
        return
    os.environ["AMBIENCE_ONNX_DIR"] = str(run_folder(tmp_path_factory, "onnx-exports"))
    yield
    os.environ.pop("AMBIENCE_ONNX_DIR", None)


@pytest.fixture(scope="session")
def photos() -> list:
    paths = photo_paths(PHOTOS)
    if not paths:
        pytest.skip(f"real photographs not found at {PHOTOS}")
    return paths


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    """The session's PostgreSQL server (embedded unless AMBIENCE_TEST_PG_DSN is set)."""
    yield from start_test_server()


@pytest.fixture
def pg_dsn(pg_server: TestServer, request: pytest.FixtureRequest) -> str:
    """A new, empty database for this test."""
    return pg_server.new_database(request.node.name.split("[")[0][-30:].lower())


@pytest.fixture(scope="session")
def caltech_lite0(tmp_path_factory: pytest.TempPathFactory) -> CaltechCollection:
    """caltech101-dev added to global_features with the real Lite0 weights, once per run."""
    return build_caltech_collection(run_folder(tmp_path_factory, "caltech"))
