"""Search inside PostgreSQL (pgvector HNSW, cosine) instead of a per-replica FAISS index.

For embedding services (image_text, global_features) on the PostgreSQL store,
``AMBIENCE_<SERVICE>_INDEX=pgvector`` keeps the searched vectors in one table per service,
``ambience_vectors_<service>`` (image_id, embedding vector(dim)) with an HNSW index
(``vector_cosine_ops``), shared by every replica: a replica holds no vectors in memory, starts
without a rebuild, and a write is searchable through every replica as soon as it is committed.

The seam is the collection: :class:`PgVectorCollection` keeps the :class:`Collection` interface
(open, sync, add, delete, rebuild, relayout, snapshot) and its ``index`` answers the
:class:`~services.common.features.index.VectorIndex` calls the features make (search, range_search, count,
dim, type_name), so the features do not know where they search.

The table holds index-space rows, i.e. what the FAISS index would hold: for global_features the
PCA-whitened vectors. ``ambience_vector_tables`` records, per service, the store uuid, the index
configuration (which includes the whitening digest) and the change-log generation the table
covers. Whoever syncs takes that row's lock and applies the store's log from that generation, so
each change is applied once, whichever replica does it; a replica whose configuration differs
from the table's (another whitening) rebuilds the table at start-up.

Distances: rows are L2-normalised, so squared L2 = 2 x cosine distance; results are reported as
squared L2, the scale of the FAISS index. HNSW is approximate: ``pgvector_ef_search`` (default 100)
is the candidate list; ``k`` above it raises it for that search. Range searches
(``distance_threshold``) scan the table exactly.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2.extras

from services.common.errors import StartupError
from services.common.features.collection import Collection, IndexLayout, IndexState
from services.common.features.index import RangeResult
from services.common.features.storage import Store
from services.common.features.store import OP_ADD
from services.common.features.vectors import within_threshold
from services.common.postgres.database import Cursor, Database, quote_ident

log = logging.getLogger(__name__)

STATE_TABLE = "ambience_vector_tables"


def table_name(service: str) -> str:
    return f"ambience_vectors_{service}"


def vector_literal(row: np.ndarray) -> str:
    """pgvector's text form of one row: ``[0.1,0.2,...]`` (float32 round-trips through repr)."""
    return "[" + ",".join(map(repr, np.asarray(row, dtype=np.float32).tolist())) + "]"


def copy_rows(cur: Cursor, table: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Bulk-load rows into an (image_id, embedding) table with one binary COPY (a table without
    the rows: no conflict handling). pgvector's binary form: int16 dim, int16 0, float4 x dim."""
    n, dim = vectors.shape
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vec", ">f4", (dim,)),
        ]
    )
    rows = np.zeros(n, dtype=row)
    rows["fields"], rows["id_len"], rows["id"] = 2, 8, ids
    rows["vec_len"], rows["dim"], rows["vec"] = 4 + 4 * dim, dim, vectors
    data = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)
    cur.copy_expert(f"COPY {table} (image_id, embedding) FROM STDIN WITH (FORMAT binary)", io.BytesIO(data))


def hnsw_build_memory_mb(rows: int, dim: int) -> int:
    """maintenance_work_mem (MB) that holds the HNSW graph of ``rows`` vectors of ``dim`` (m 16) in
    memory: per element the vector (4 x dim + 8 B) and its neighbour lists and header (about 1 KB
    at m 16), plus a quarter for the allocator (pgvector 0.8 measures about 2.8 KB per 512-d
    element; this rule gives 3.8 KB)."""
    return max(1, math.ceil(rows * (4 * dim + 8 + 1024) * 1.25 / 2**20))  # an empty table too


def create_hnsw_index(cur: Cursor, table: str, build_memory_mb: int = 512, build_workers: int = 2) -> None:
    """The cosine HNSW index of a loaded table (pgvector's defaults: m 16, ef_construction 64).

    ``build_memory_mb``: maintenance_work_mem of the build; while the graph fits in it the build
    runs in memory, past it pgvector finishes on disk, many times slower (the server logs "hnsw
    graph no longer fits into maintenance_work_mem"). :func:`hnsw_build_memory_mb` sizes it; the
    callers cap it. ``build_workers``: parallel maintenance workers besides the leader (pgvector
    >= 0.6 builds in parallel; a parallel build holds the graph in shared memory)."""
    # The build takes longer than the pool's statement timeout on a large table.
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute(f"SET LOCAL maintenance_work_mem = '{int(build_memory_mb)}MB'")
    cur.execute(f"SET LOCAL max_parallel_maintenance_workers = {int(build_workers)}")
    cur.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)")


def ensure_extension(db: Database) -> None:
    """The ``vector`` extension and the per-service state table (idempotent, concurrency-safe)."""

    def create(cur: Cursor) -> None:
        # Two replicas starting at once would race on CREATE EXTENSION: serialise on an advisory lock.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ambience pgvector setup'))")
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
                service text PRIMARY KEY,
                store_uuid text NOT NULL,
                index_config text NOT NULL,
                dim integer NOT NULL,
                generation bigint NOT NULL
            )"""
        )

    db.run(create)


class PgVectorIndex:
    """The searched vectors of one service, in PostgreSQL (the VectorIndex calls features make)."""

    binary = False

    def __init__(self, db: Database, service: str, dim: int, ef_search: int) -> None:
        self.db = db
        self.service = service
        self.table = quote_ident(table_name(service))
        self._dim = dim
        self.ef_search = ef_search

    @property
    def dim(self) -> int:
        return self._dim

    def type_name(self) -> str:
        return "pgvector HNSW (cosine)"

    def count(self) -> int:
        def query(cur: Cursor) -> int:
            cur.execute(f"SELECT count(*) FROM {self.table}")
            return int(cur.fetchone()[0])

        return self.db.run(query)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest rows per query (squared L2 of unit vectors); ids -1 where fewer exist."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = max(1, k)

        def query(cur: Cursor) -> list[list[tuple[int, float]]]:
            # SET LOCAL: the candidate list for this transaction only (the connection is pooled).
            cur.execute(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, k)}")
            found = []
            for row in queries:
                literal = vector_literal(row)
                cur.execute(
                    f"SELECT image_id, embedding <=> %s::vector AS d FROM {self.table} "
                    "ORDER BY embedding <=> %s::vector LIMIT %s",
                    (literal, literal, k),
                )
                found.append([(int(i), float(d)) for i, d in cur.fetchall()])
            return found

        return self._pad(self.db.run(query), k)

    def range_search(self, queries: np.ndarray, max_distance: float) -> list[RangeResult]:
        """Every row within ``max_distance`` (squared L2), exact (a scan, not the HNSW index)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))

        def query(cur: Cursor) -> list[RangeResult]:
            out = []
            for row in queries:
                literal = vector_literal(row)
                cur.execute(
                    f"SELECT image_id, d FROM (SELECT image_id, embedding <=> %s::vector AS d "
                    f"FROM {self.table}) s WHERE 2 * d <= %s ORDER BY d",
                    (literal, within_threshold(max_distance)),
                )
                rows = cur.fetchall()
                out.append(
                    RangeResult(
                        np.array([2 * float(d) for _, d in rows], dtype=np.float32),
                        np.array([int(i) for i, _ in rows], dtype=np.int64),
                    )
                )
            return out

        return self.db.run(query)

    @staticmethod
    def _pad(found: list[list[tuple[int, float]]], k: int) -> tuple[np.ndarray, np.ndarray]:
        distances = np.full((len(found), k), np.inf, dtype=np.float32)
        ids = np.full((len(found), k), -1, dtype=np.int64)
        for n, hits in enumerate(found):
            for m, (image_id, cosine_distance) in enumerate(hits):
                ids[n, m] = image_id
                distances[n, m] = 2 * cosine_distance  # = squared L2 of unit vectors
        return distances, ids

    def with_index(self, fn: Any) -> Any:
        raise TypeError("the pgvector index has no FAISS index to hand out")

    # -- writes, inside a transaction of the caller ----------------------------------------------------

    def upsert(self, cur: Cursor, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = [(int(i), vector_literal(v)) for i, v in zip(ids, vectors, strict=True)]
        psycopg2.extras.execute_values(
            cur,
            f"INSERT INTO {self.table} (image_id, embedding) VALUES %s "
            "ON CONFLICT (image_id) DO UPDATE SET embedding = EXCLUDED.embedding",
            rows,
            template="(%s, %s::vector)",
            page_size=500,
        )

    def delete(self, cur: Cursor, image_ids: Iterable[int]) -> None:
        cur.execute(f"DELETE FROM {self.table} WHERE image_id = ANY(%s)", (list(image_ids),))


class PgVectorCollection(Collection):
    """A collection whose searched vectors live in PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        layout: IndexLayout,
        snapshot_path: Path,
        service: str,
        ef_search: int,
        build_memory_mb: int = 4096,
        build_workers: int = 2,
    ) -> None:
        db = getattr(store, "db", None)
        if not isinstance(db, Database):
            prefix = f"AMBIENCE_{service.upper()}_"
            raise StartupError(
                f"{prefix}INDEX=pgvector searches inside PostgreSQL: it needs {prefix}STORE=postgres"
            )
        super().__init__(store, layout, snapshot_path)
        self.service = service
        self.db = db
        self.build_memory_mb = build_memory_mb  # the cap: the build asks for what the table needs
        self.build_workers = build_workers
        ensure_extension(db)
        self.index = PgVectorIndex(db, service, layout.dim, ef_search)  # type: ignore[assignment]

    # -- the shared table's state -------------------------------------------------------------------

    def _lock_state(self, cur: Cursor) -> tuple[str, str, int] | None:
        """This service's state row, locked until the transaction ends (replicas applying changes
        take turns; the later ones find nothing left to do); None when there is none yet."""
        cur.execute(
            f"SELECT store_uuid, index_config, generation FROM {STATE_TABLE} WHERE service = %s FOR UPDATE",
            (self.service,),
        )
        row = cur.fetchone()
        return None if row is None else (str(row[0]), str(row[1]), int(row[2]))

    def _current(self, state: tuple[str, str, int] | None) -> bool:
        return (
            state is not None
            and state[0] == self.store.uuid
            and state[1] == self.layout.config
            and self.store.changes_since(state[2]) is not None
        )

    # -- start-up -------------------------------------------------------------------------------------

    def open(self) -> None:
        with self._sync_lock:
            current = self.db.run(lambda cur: self._current(self._lock_state(cur)))
            if current:
                self.state = IndexState(loaded_from="pgvector")
                self.sync()
            else:
                self.rebuild()

    def relayout(self, layout: IndexLayout) -> None:
        """(Re)build the shared table from every stored record under ``layout``, unless another
        replica just did it for this store and configuration."""
        with self._sync_lock:
            self.layout = layout
            self.index._dim = layout.dim  # type: ignore[attr-defined]
            generation = self.db.run(self._rebuild)
            self.state = IndexState(generation=generation, loaded_from="rebuild")
            self.sync()

    def _rebuild(self, cur: Cursor) -> int:
        # An HNSW build of a large table takes longer than the pool's statement timeout.
        cur.execute("SET LOCAL statement_timeout = 0")
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ambience pgvector {self.service}",))
        state = self._lock_state(cur)
        if self._current(state):
            assert state is not None
            return state[2]  # another replica built it for this store and configuration meanwhile
        index: PgVectorIndex = self.index  # type: ignore[assignment]
        started = time.monotonic()
        total = self.store.count()
        log.info("building the pgvector table of %s from %d stored records", self.service, total)
        cur.execute(f"DROP TABLE IF EXISTS {index.table}")
        cur.execute(
            f"CREATE TABLE {index.table} "
            f"(image_id bigint PRIMARY KEY, embedding vector({index.dim}) NOT NULL)"
        )
        generation, batches = self.store.snapshot_items()
        for batch in batches:
            copy_rows(cur, index.table, *self.layout.index_rows(batch))
        # Built after the load: one HNSW build is much faster than inserting into the graph row by row.
        create_hnsw_index(
            cur,
            index.table,
            min(self.build_memory_mb, hnsw_build_memory_mb(total, index.dim)),
            self.build_workers,
        )
        cur.execute(
            f"""INSERT INTO {STATE_TABLE} (service, store_uuid, index_config, dim, generation)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (service) DO UPDATE SET store_uuid = EXCLUDED.store_uuid,
                    index_config = EXCLUDED.index_config, dim = EXCLUDED.dim,
                    generation = EXCLUDED.generation""",
            (self.service, self.store.uuid, self.layout.config, index.dim, generation),
        )
        log.info("built the pgvector table: %d records in %.1fs", total, time.monotonic() - started)
        return generation

    # -- changes ----------------------------------------------------------------------------------------

    def sync(self) -> int:
        """Apply the store's changes the shared table does not have yet (once, whichever replica)."""
        with self._sync_lock:
            result = self.db.run(self._apply_changes)
            if result is None:
                self.rebuild()
                return 0
            generation, applied = result
            self.state.generation = generation
            self.state.replayed += applied
            return applied

    def _apply_changes(self, cur: Cursor) -> tuple[int, int] | None:
        state = self._lock_state(cur)
        if state is None or state[0] != self.store.uuid:
            return None
        if state[1] != self.layout.config:
            # Another replica rebuilt the table with another configuration (a whitening trained
            # there): rows mapped here would be in another space. Its replicas apply the changes.
            log.warning(
                "the pgvector table of %s was built with another index configuration: restart this "
                "replica with that configuration",
                self.service,
            )
            return state[2], 0
        result = self.store.changes_since(state[2])
        if result is None:
            return None
        current, changes = result
        index: PgVectorIndex = self.index  # type: ignore[assignment]
        pending: list[int] = []
        for _, op, image_id in changes:
            if op == OP_ADD:
                pending.append(image_id)
                continue
            self._upsert(cur, pending)
            index.delete(cur, [image_id])
        self._upsert(cur, pending)
        cur.execute(f"UPDATE {STATE_TABLE} SET generation = %s WHERE service = %s", (current, self.service))
        return current, len(changes)

    def _upsert(self, cur: Cursor, image_ids: list[int]) -> None:
        if not image_ids:
            return
        found = self.store.get_many(image_ids)
        items = [(image_id, found[image_id]) for image_id in image_ids if image_id in found]
        if items:
            self.index.upsert(cur, *self.layout.index_rows(items))  # type: ignore[attr-defined]
        image_ids.clear()

    # -- snapshots: the table is durable; only tell the store how far this replica has read ------------

    def snapshot(self, force: bool = False) -> bool:
        self.store.trim_log(self.state.generation)
        return False
