"""services.common.postgres.database against a real PostgreSQL server (the session's embedded one)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from ambience_support.pg import TestServer
from services.common.errors import DatabaseUnavailable
from services.common.postgres.database import (
    Database,
    EmbeddedPostgres,
    Migration,
    PostgresComponent,
    PostgresSettings,
    SchemaMismatchError,
)

STEPS = [
    Migration(1, "notes table", "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)"),
    Migration(
        2,
        "trigram index",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;"
        " CREATE INDEX notes_body_trgm ON notes USING gin (body gin_trgm_ops)",
    ),
]


def tables(db: Database) -> set[str]:
    def query(cur: psycopg2.extensions.cursor) -> set[str]:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in cur.fetchall()}

    return db.run(query, schema=False)


def test_migrations_apply_once_and_in_order(pg_dsn: str) -> None:
    db = Database(pg_dsn)
    assert db.migrate("notes", STEPS[:1]) == [1]
    assert db.migrate("notes", STEPS[:1]) == []
    assert db.migrate("notes", STEPS) == [2]  # a later release adds a step
    assert db.migrate("notes", STEPS) == []
    assert db.schema_versions() == {"notes": 2}
    # A second process (another pool) finds everything in place.
    other = Database(pg_dsn, migrations={"notes": STEPS})
    other.ensure_schema()
    assert other.migrate("notes", STEPS) == []
    db.close()
    other.close()


def test_concurrent_starters_apply_each_step_once(pg_dsn: str) -> None:
    dbs = [Database(pg_dsn) for _ in range(4)]
    applied: list[list[int]] = []
    threads = [threading.Thread(target=lambda d=d: applied.append(d.migrate("notes", STEPS))) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for versions in applied for v in versions) == [1, 2]
    for d in dbs:
        d.close()


def test_failing_step_leaves_nothing_behind(pg_dsn: str) -> None:
    db = Database(pg_dsn)
    broken = [*STEPS[:1], Migration(2, "typo", "CREATE TABLE other (x int); CREATE INDEXX oops")]
    with pytest.raises(psycopg2.errors.SyntaxError):
        db.migrate("notes", broken)
    assert "notes" not in tables(db) and "other" not in tables(db)
    assert db.migrate("notes", STEPS) == [1, 2]  # the fixed release applies cleanly
    db.close()


def test_unknown_schema_history_is_refused(pg_dsn: str) -> None:
    db = Database(pg_dsn)
    db.migrate("notes", STEPS)
    with pytest.raises(SchemaMismatchError, match="step 2 'trigram index'"):
        db.migrate("notes", STEPS[:1])  # an older release meets a newer database
    db.close()


def test_more_concurrent_users_than_connections_wait_their_turn(pg_dsn: str) -> None:
    db = Database(pg_dsn, pool_size=2)
    results: list[int] = []

    def work(i: int) -> None:
        def query(cur: psycopg2.extensions.cursor) -> int:
            cur.execute("SELECT %s FROM pg_sleep(0.05)", (i,))
            return int(cur.fetchone()[0])

        results.append(db.run(query))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(10))
    db.close()


def test_errors_roll_back_and_the_connection_is_reused(pg_dsn: str) -> None:
    db = Database(pg_dsn, migrations={"notes": STEPS}, pool_size=1)

    def insert_then_fail(cur: psycopg2.extensions.cursor) -> None:
        cur.execute("INSERT INTO notes VALUES (1, 'kept?')")
        cur.execute("INSERT INTO notes VALUES (1, 'duplicate')")

    with pytest.raises(psycopg2.errors.UniqueViolation):
        db.run(insert_then_fail)

    def count(cur: psycopg2.extensions.cursor) -> int:
        cur.execute("SELECT count(*) FROM notes")
        return int(cur.fetchone()[0])

    assert db.run(count) == 0
    db.close()


def test_unreachable_server_is_a_clear_database_unavailable(tmp_path: Path) -> None:
    db = Database(
        f"host={tmp_path} dbname=nothing user=postgres", connect_timeout_s=1, migrations={"notes": STEPS}
    )
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"PostgreSQL at .* is unavailable: .*") as err:
        db.ping()
    assert str(tmp_path) in str(err.value)
    assert time.monotonic() - started < 5


def test_server_restart_recovers_by_itself(pg_server: TestServer, pg_dsn: str) -> None:
    embedded = pg_server.require_embedded()
    db = Database(pg_dsn, migrations={"notes": STEPS}, pool_size=3)
    db.run(lambda cur: cur.execute("INSERT INTO notes VALUES (1, 'before')"))
    # Fill the pool with open connections that the restart will break.
    hold = threading.Barrier(3)
    threads = [
        threading.Thread(target=lambda: db.run(lambda cur: (hold.wait(), cur.execute("SELECT 1"))))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    embedded.stop()
    try:
        assert not embedded.running
        with pytest.raises(DatabaseUnavailable, match="is unavailable"):
            db.ping()
    finally:
        embedded.start()

    def bodies(cur: psycopg2.extensions.cursor) -> list[str]:
        cur.execute("SELECT body FROM notes ORDER BY id")
        return [row[0] for row in cur.fetchall()]

    # Every call after the restart succeeds: broken pooled connections are replaced, not returned.
    for _ in range(5):
        assert db.run(bodies) == ["before"]
    db.close()


def test_schema_is_created_when_a_server_that_was_down_comes_back(pg_server: TestServer, pg_dsn: str) -> None:
    embedded = pg_server.require_embedded()
    component = PostgresComponent(PostgresSettings(dsn=pg_dsn, connect_timeout_s=1), {"notes": STEPS}, "test")
    embedded.stop()
    try:
        db = component.open()  # not fatal: the service starts and answers 503 meanwhile
        with pytest.raises(DatabaseUnavailable):
            db.run(lambda cur: cur.execute("SELECT count(*) FROM notes"))
    finally:
        embedded.start()
    db.run(lambda cur: cur.execute("INSERT INTO notes VALUES (7, 'late')"))
    assert db.schema_versions() == {"notes": 2}
    component.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A folder outside pytest's private basetemp (see ambience_support/pg.py)."""
    folder = Path(tempfile.mkdtemp(prefix="ambience-data-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_embedded_default_lives_in_the_data_dir(data_dir: Path) -> None:
    tmp_path = data_dir
    settings = PostgresSettings(dsn=None, data_dir=tmp_path / "pg", database="ambience_test")
    component = PostgresComponent(settings, {"notes": STEPS}, "test")
    db = component.open()
    assert (tmp_path / "pg" / "PG_VERSION").exists()
    assert component.describe()["embedded"] is True
    assert db.server_version().startswith("18")
    db.run(lambda cur: cur.execute("INSERT INTO notes VALUES (1, 'kept')"))
    component.close()
    assert not EmbeddedPostgres(tmp_path / "pg").running  # the last user stopped it

    again = PostgresComponent(settings, {"notes": STEPS}, "test")  # restart: data kept, no re-migration
    db = again.open()

    def count(cur: psycopg2.extensions.cursor) -> int:
        cur.execute("SELECT count(*) FROM notes")
        return int(cur.fetchone()[0])

    assert db.run(count) == 1
    again.close()


#: A deferred constraint trigger runs at COMMIT: it ends its own backend there, the first time
#: only (a sequence is not rolled back), as a server crash or a network cut during COMMIT would.
DIE_DURING_FIRST_COMMIT = """
CREATE SEQUENCE commits_seen;
CREATE FUNCTION die_during_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('commits_seen') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON notes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die_during_first_commit();
"""


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_break_during_commit_is_retried_only_for_idempotent_work(pg_dsn: str, idempotent: bool) -> None:
    db = Database(pg_dsn, migrations={"notes": STEPS}, pool_size=1)
    db.run(lambda cur: cur.execute(DIE_DURING_FIRST_COMMIT))  # also leaves a pooled connection
    calls = []

    def insert(cur: psycopg2.extensions.cursor) -> None:
        calls.append(1)
        cur.execute("INSERT INTO notes VALUES (1, 'once') ON CONFLICT DO NOTHING")

    if idempotent:
        db.run(insert, idempotent=True)
        assert len(calls) == 2  # run again on a fresh connection: harmless by contract
    else:
        # The outcome of COMMIT is unknown to the client: running the work again could apply
        # it twice, so the caller is told instead.
        with pytest.raises(DatabaseUnavailable):
            db.run(insert)
        assert len(calls) == 1
    db.close()
