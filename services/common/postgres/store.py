"""PostgreSQL feature store: the same contract as the LMDB store, shared by replicas on many hosts.

Same semantics as :class:`services.common.features.store.FeatureStore`: raw feature bytes per image id, a
metadata record that refuses a mismatching configuration, a change log with a write generation that
every replica's in-memory FAISS index replays, durable acknowledged writes (a write returns after
COMMIT). Any number of processes of a service, on any hosts, pointed at one database serve the same
collection: each keeps its own index and snapshots (in its own data dir) and follows the log.

Tables (one set for all services; ``store`` is the service name):

- ``ambience_stores``: per store the metadata record, uuid, generation, log floor, count and bytes;
- ``ambience_features``: (store, image_id) -> value (``STORAGE EXTERNAL``: feature bytes do not
  compress, so PostgreSQL is told not to try);
- ``ambience_log``: (store, generation) -> op, image_id;
- ``ambience_replicas``: which generation each replica's snapshot covers, so the log is trimmed only
  below what every live replica has.

Writers of one store are serialised by a row lock on its ``ambience_stores`` row, taken first in
every write transaction: generations are handed out in commit order, so a reader that sees
generation N has seen every change up to N (no gaps from transactions still in flight). Each write
sends ``NOTIFY ambience_store_changes, '<store>'``; :meth:`wait_for_change` listens, so replicas
apply a write within milliseconds instead of the polling interval (which stays the fallback).
"""

from __future__ import annotations

import json
import select
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

from services.common.errors import DatabaseUnavailable
from services.common.features.storage import replica_name
from services.common.features.store import OP_ADD, OP_DELETE, SCHEMA_VERSION, check_metadata
from services.common.postgres.database import Cursor, Database, Migration, PostgresComponent, PostgresSettings

COMPONENT = "feature_store"
CHANNEL = "ambience_store_changes"
#: Replicas not seen for this long no longer hold back log trimming (they rebuild when they return).
REPLICA_TIMEOUT = "7 days"

MIGRATIONS = [
    Migration(
        1,
        "feature store",
        """
        CREATE TABLE ambience_stores (
            store text PRIMARY KEY,
            metadata jsonb NOT NULL,
            uuid text NOT NULL,
            generation bigint NOT NULL DEFAULT 0,
            log_floor bigint NOT NULL DEFAULT 0,
            count bigint NOT NULL DEFAULT 0,
            bytes bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE ambience_features (
            store text NOT NULL REFERENCES ambience_stores ON DELETE CASCADE,
            image_id bigint NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (store, image_id)
        );
        ALTER TABLE ambience_features ALTER COLUMN value SET STORAGE EXTERNAL;
        CREATE TABLE ambience_log (
            store text NOT NULL REFERENCES ambience_stores ON DELETE CASCADE,
            generation bigint NOT NULL,
            op "char" NOT NULL,
            image_id bigint NOT NULL,
            PRIMARY KEY (store, generation)
        );
        CREATE TABLE ambience_replicas (
            store text NOT NULL REFERENCES ambience_stores ON DELETE CASCADE,
            replica text NOT NULL,
            covered bigint NOT NULL,
            seen_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (store, replica)
        );
        """,
    ),
    Migration(
        2,
        "digest of the uploaded file per record",
        "ALTER TABLE ambience_features ADD COLUMN digest text;",
    ),
]


def registered_store(db: Database, store: str, wanted: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The store's (metadata, uuid), registered with ``wanted`` by its first replica; a replica whose
    settings differ from the registered ones is refused (StartupError naming both)."""
    wanted = {"schema_version": SCHEMA_VERSION, **wanted}

    def check(cur: Cursor) -> tuple[dict[str, Any], str]:
        cur.execute(
            "INSERT INTO ambience_stores (store, metadata, uuid) VALUES (%s, %s, %s) "
            "ON CONFLICT (store) DO NOTHING",
            (store, json.dumps(wanted, sort_keys=True), uuid.uuid4().hex),
        )
        cur.execute("SELECT metadata, uuid FROM ambience_stores WHERE store = %s", (store,))
        stored, store_uuid = cur.fetchone()
        return stored, store_uuid

    stored, store_uuid = db.run(check)
    check_metadata(
        stored,
        wanted,
        f"the {store} store in {db.where}",
        "Every replica of a service needs the same settings; point this one at another database "
        "or restore the settings the store was built with.",
    )
    return stored, store_uuid


class StoreNotifications:
    """LISTEN for the stores' writes on a connection of its own (opened on first use). Any failure
    falls back to plain waiting (polling), and the connection is opened again on a later wait."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._lock = threading.Lock()

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Return on a notification, after ``timeout`` seconds, or on ``stop``."""
        try:
            conn = self._listen()
            if select.select([conn], [], [], timeout) != ([], [], []):
                conn.poll()
                conn.notifies.clear()
        except (psycopg2.Error, OSError, DatabaseUnavailable):
            self.close()
            stop.wait(timeout)

    def _listen(self) -> Any:
        with self._lock:
            if self._conn is None or self._conn.closed:
                conn = psycopg2.connect(self.dsn, application_name="ambience-store-listen", connect_timeout=5)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                self._conn = conn
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None


class PostgresFeatureStore:
    """Durable id -> bytes mapping with a change log, in PostgreSQL. Thread-safe.

    ``store``: the service name (one store per service); ``replica``: this process's stable name
    (host and data dir), used only to decide how far the shared log may be trimmed.
    """

    def __init__(
        self, db: Database, store: str, metadata: dict[str, Any], *, replica: str, owner: Any = None
    ) -> None:
        self.db = db
        #: What to close with the store (the PostgresComponent that opened ``db``), if it owns it.
        self._owner = owner
        self.store = store
        self.replica = replica
        self.path = f"postgresql {db.where} store {store!r}"
        self.metadata, self.uuid = registered_store(db, store, metadata)
        self._notifications = StoreNotifications(db.dsn)

    # -- writes -----------------------------------------------------------------------------------

    def _lock_generation(self, cur: Cursor) -> int:
        cur.execute("SELECT generation FROM ambience_stores WHERE store = %s FOR UPDATE", (self.store,))
        return int(cur.fetchone()[0])

    def _finish_write(
        self, cur: Cursor, generation: int, log: list[tuple[int, str, int]], d_count: int, d_bytes: int
    ) -> None:
        if not log:
            return
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO ambience_log (store, generation, op, image_id) VALUES %s",
            [(self.store, gen, op, image_id) for gen, op, image_id in log],
        )
        cur.execute(
            "UPDATE ambience_stores SET generation = %s, count = count + %s, bytes = bytes + %s "
            "WHERE store = %s",
            (generation, d_count, d_bytes, self.store),
        )
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.store))

    def add(self, image_id: int, value: bytes, digest: str = "") -> bool:
        """Store ``value`` (of a file with SHA-256 ``digest``, when known) under a new id. False
        (and nothing written) when the id exists."""
        return self.add_many([(image_id, value)], {image_id: digest} if digest else None)[0]

    def digest(self, image_id: int) -> str | None:
        """The SHA-256 recorded with the image stored under ``image_id`` (None: none recorded)."""

        def query(cur: Cursor) -> str | None:
            cur.execute(
                "SELECT digest FROM ambience_features WHERE store = %s AND image_id = %s",
                (self.store, image_id),
            )
            row = cur.fetchone()
            return row[0] if row else None

        return self.db.run(query)

    def add_many(
        self, items: Iterable[tuple[int, bytes]], digests: dict[int, str] | None = None
    ) -> list[bool]:
        """Add several records in one transaction; existing ids are left untouched."""
        digests = digests or {}
        items = list(items)
        if not items:
            return []

        def put(cur: Cursor) -> list[bool]:
            generation = self._lock_generation(cur)
            inserted = psycopg2.extras.execute_values(
                cur,
                "INSERT INTO ambience_features (store, image_id, value, digest) VALUES %s "
                "ON CONFLICT (store, image_id) DO NOTHING RETURNING image_id",
                [
                    (self.store, image_id, psycopg2.Binary(value), digests.get(image_id))
                    for image_id, value in items
                ],
                fetch=True,
                page_size=max(len(items), 1),
            )
            new_ids = {int(row[0]) for row in inserted}
            added, log, d_bytes, seen = [], [], 0, set()
            for image_id, value in items:
                ok = image_id in new_ids and image_id not in seen
                seen.add(image_id)
                if ok:
                    generation += 1
                    log.append((generation, OP_ADD.decode(), image_id))
                    d_bytes += len(value)
                added.append(ok)
            self._finish_write(cur, generation, log, len(log), d_bytes)
            return added

        return self.db.run(put)

    def delete(self, image_id: int) -> bool:
        def remove(cur: Cursor) -> bool:
            generation = self._lock_generation(cur)
            cur.execute(
                "DELETE FROM ambience_features WHERE store = %s AND image_id = %s "
                "RETURNING octet_length(value)",
                (self.store, image_id),
            )
            row = cur.fetchone()
            if row is None:
                return False
            self._finish_write(
                cur, generation + 1, [(generation + 1, OP_DELETE.decode(), image_id)], -1, -int(row[0])
            )
            return True

        return self.db.run(remove)

    def trim_log(self, upto_generation: int) -> None:
        """This replica's snapshot covers ``upto_generation``: forget log entries every live replica
        has covered (others may still need them to catch up without a rebuild)."""

        def trim(cur: Cursor) -> None:
            cur.execute(
                "INSERT INTO ambience_replicas (store, replica, covered) VALUES (%s, %s, %s) "
                "ON CONFLICT (store, replica) DO UPDATE SET covered = EXCLUDED.covered, seen_at = now()",
                (self.store, self.replica, upto_generation),
            )
            cur.execute(
                f"SELECT min(covered) FROM ambience_replicas WHERE store = %s "
                f"AND seen_at > now() - interval '{REPLICA_TIMEOUT}'",
                (self.store,),
            )
            floor = int(cur.fetchone()[0])
            cur.execute(
                "UPDATE ambience_stores SET log_floor = %s WHERE store = %s AND log_floor < %s RETURNING 1",
                (floor, self.store, floor),
            )
            if cur.fetchone():
                cur.execute(
                    "DELETE FROM ambience_log WHERE store = %s AND generation <= %s", (self.store, floor)
                )

        self.db.run(trim)

    # -- reads ------------------------------------------------------------------------------------

    def _stores_row(self, column: str) -> int:
        def query(cur: Cursor) -> int:
            cur.execute(f"SELECT {column} FROM ambience_stores WHERE store = %s", (self.store,))
            return int(cur.fetchone()[0])

        return self.db.run(query)

    @property
    def generation(self) -> int:
        return self._stores_row("generation")

    def get(self, image_id: int) -> bytes | None:
        def query(cur: Cursor) -> bytes | None:
            cur.execute(
                "SELECT value FROM ambience_features WHERE store = %s AND image_id = %s",
                (self.store, image_id),
            )
            row = cur.fetchone()
            return None if row is None else bytes(row[0])

        return self.db.run(query)

    def get_many(self, image_ids: list[int]) -> dict[int, bytes]:
        """The records of ``image_ids`` that exist, in one round trip (replaying a log of adds)."""

        def query(cur: Cursor) -> dict[int, bytes]:
            cur.execute(
                "SELECT image_id, value FROM ambience_features WHERE store = %s AND image_id = ANY(%s)",
                (self.store, image_ids),
            )
            return {int(i): bytes(v) for i, v in cur.fetchall()}

        return self.db.run(query) if image_ids else {}

    def __contains__(self, image_id: int) -> bool:
        def query(cur: Cursor) -> bool:
            cur.execute(
                "SELECT 1 FROM ambience_features WHERE store = %s AND image_id = %s", (self.store, image_id)
            )
            return cur.fetchone() is not None

        return self.db.run(query)

    def count(self) -> int:
        return self._stores_row("count")

    def snapshot_items(self, batch: int = 4096) -> tuple[int, Iterator[list[tuple[int, bytes]]]]:
        """(generation, batches of (id, value)) read in one consistent snapshot.

        Streams through a server-side cursor on a connection of its own (REPEATABLE READ), so a
        rebuild of millions of records never holds them all in memory nor a pool slot for long.
        """
        try:
            conn = psycopg2.connect(self.db.dsn, application_name="ambience-store-snapshot")
        except psycopg2.Error as exc:
            raise DatabaseUnavailable(f"PostgreSQL at {self.db.where} is unavailable: {exc}") from exc
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT generation FROM ambience_stores WHERE store = %s", (self.store,))
            generation = int(cur.fetchone()[0])

        def batches() -> Iterator[list[tuple[int, bytes]]]:
            try:
                with conn.cursor(name="ambience_snapshot") as cur:
                    cur.itersize = batch
                    cur.execute(
                        "SELECT image_id, value FROM ambience_features WHERE store = %s ORDER BY image_id",
                        (self.store,),
                    )
                    while rows := cur.fetchmany(batch):
                        yield [(int(i), bytes(v)) for i, v in rows]
            finally:
                conn.close()

        return generation, batches()

    def ids(self) -> list[int]:
        def query(cur: Cursor) -> list[int]:
            cur.execute(
                "SELECT image_id FROM ambience_features WHERE store = %s ORDER BY image_id", (self.store,)
            )
            return [int(r[0]) for r in cur.fetchall()]

        return self.db.run(query)

    def changes_since(self, generation: int) -> tuple[int, list[tuple[int, bytes, int]]] | None:
        """(current generation, [(generation, op, image_id), ...]) after ``generation``; None when
        the log no longer reaches back that far (the caller must rebuild)."""

        def query(cur: Cursor) -> tuple[int, list[tuple[int, bytes, int]]] | None:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT generation, log_floor FROM ambience_stores WHERE store = %s", (self.store,))
            current, floor = (int(v) for v in cur.fetchone())
            if generation < floor or generation > current:
                return None
            cur.execute(
                "SELECT generation, op, image_id FROM ambience_log WHERE store = %s AND generation > %s "
                "ORDER BY generation",
                (self.store, generation),
            )
            return current, [(int(g), str(op).encode(), int(i)) for g, op, i in cur.fetchall()]

        return self.db.run(query)

    def disk_bytes(self) -> int:
        return self._stores_row("bytes")

    # -- change notification ----------------------------------------------------------------------

    def wait_for_change(self, timeout: float, stop: threading.Event) -> None:
        """Return when another process wrote to this store, after ``timeout`` seconds, or on ``stop``."""
        self._notifications.wait(timeout, stop)

    def close(self) -> None:
        self._notifications.close()
        if self._owner is not None:
            self._owner.close()


def open_postgres_store(service: str, data_dir: Path, metadata: dict[str, Any]) -> PostgresFeatureStore:
    """``AMBIENCE_<SERVICE>_STORE=postgres`` (services.common.features.storage.open_store): the
    store in the server of ``AMBIENCE_PG_*`` (the embedded one when no DSN is set)."""
    component = PostgresComponent(PostgresSettings(), {COMPONENT: MIGRATIONS}, f"ambience-{service}")
    db = component.open()
    try:
        return PostgresFeatureStore(db, service, metadata, replica=replica_name(data_dir), owner=component)
    except BaseException:
        component.close()
        raise
