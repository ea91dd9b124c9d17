from __future__ import annotations

from collections.abc import Iterator

import pytest

from ambience_support.caltech import CaltechCollection, build_caltech_collection
from ambience_support.pg import TestServer, start_test_server
from ambience_support.photos import PHOTOS, photo_paths


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
    """caltech101-dev added to global_features with the real Lite0 weights, once per session."""
    return build_caltech_collection(tmp_path_factory.mktemp("caltech"))
