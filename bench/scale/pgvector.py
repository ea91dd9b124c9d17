"""pgvector HNSW against FAISS: latency of one k=10 query and recall@10 at 100k and 1M vectors.

512-d unit vectors, clustered (n/50 Gaussian clusters, like embeddings; uniform random vectors have
no neighbourhoods and every approximate index looks bad on them). Latency of one k=10 query and
recall@10 against the exact answer (FAISS flat, the reference), for FAISS IVF (nlist sqrt(n), nprobe
16) and pgvector HNSW (m 16, ef_construction 64, ef_search 100 or ``--pgvector-ef-search``, through
the service's own ``PgVectorIndex``) in an embedded PostgreSQL. The HNSW build gets the
maintenance_work_mem the service's rule asks for (``hnsw_build_memory_mb``, capped by
``--pgvector-build-memory-mb``), so the graph is built in memory, and one parallel worker per other
core; its progress is logged every 30 s. The row gives the table's and the index's size. pgvector
stops at ``--pgvector-max`` vectors; for larger sizes the table shows the build time projected from
the measured rate (marked as a projection). ``--small``: 2,000 vectors, 20 queries.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import psycopg2

from bench.harness import progress, small_note
from bench.timing import machine, one_at_a_time
from bench.timing import percentile_ms as ms
from bench.vectors import clustered, recall_at, unit_centres
from services.common.postgres.database import Cursor, Database, EmbeddedPostgres, ensure_database, quote_ident
from services.common.postgres.vectors import (
    PgVectorIndex,
    copy_rows,
    create_hnsw_index,
    ensure_extension,
    hnsw_build_memory_mb,
    table_name,
)

DIM = 512
K = 10
SPREAD = 0.35  # norm of the noise around a centre (before normalising)
log = progress("scale pgvector")


@dataclass
class PgVectorRun:
    searches: dict[int, tuple[np.ndarray, list[float]]]  # ef_search -> (ids found, latencies)
    load_s: float
    build_s: float
    build_memory_mb: int
    build_workers: int
    in_memory: bool  # False: the graph outgrew maintenance_work_mem and the build finished on disk
    table_bytes: int
    index_bytes: int


def watch_build(dsn: str, table: str, rows: int, done: threading.Event) -> None:
    """Log the HNSW build's progress (pg_stat_progress_create_index) every 30 s until ``done``."""
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        while not done.wait(30):
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT p.phase, p.tuples_done FROM pg_stat_progress_create_index p "
                    "WHERE p.relid = %s::regclass",
                    (table,),
                )
                row = cur.fetchone()
            if row is not None:
                log(
                    f"vectors: HNSW build of {rows:,}: {row[0]}, {int(row[1] or 0):,} tuples, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    finally:
        conn.close()


def pgvector_search(
    db: Database,
    data: np.ndarray,
    q: np.ndarray,
    build_memory_cap_mb: int,
    build_workers: int,
    ef_searches: list[int],
) -> PgVectorRun:
    """Load ``data`` into a table (binary COPY), build its HNSW index (maintenance_work_mem sized by
    the service's rule, up to the cap), search ``q`` through the service's PgVectorIndex."""
    n = len(data)
    service = f"bench{n}"
    table = table_name(service)

    def load(cur: Cursor) -> None:
        cur.execute("SET LOCAL statement_timeout = 0")
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (image_id bigint PRIMARY KEY, embedding vector({DIM}) NOT NULL)")
        for start in range(0, n, 20_000):
            chunk = data[start : start + 20_000]
            copy_rows(cur, table, np.arange(start, start + len(chunk), dtype=np.int64), chunk)
            if start % 200_000 == 0 and start:
                log(f"vectors: COPY {start:,} of {n:,} rows")

    log(f"vectors: COPY {n:,} rows into PostgreSQL")
    started = time.perf_counter()
    db.run(load)
    load_s = time.perf_counter() - started
    memory_mb = min(build_memory_cap_mb, hnsw_build_memory_mb(n, DIM))
    log(f"vectors: HNSW build of {n:,} (maintenance_work_mem {memory_mb} MB, {build_workers} workers)")
    notices: list[str] = []

    def build(cur: Cursor) -> None:
        del cur.connection.notices[:]
        create_hnsw_index(cur, table, memory_mb, build_workers)
        notices.extend(cur.connection.notices)

    done = threading.Event()
    watcher = threading.Thread(target=watch_build, args=(db.dsn, table, n, done), daemon=True)
    watcher.start()
    started = time.perf_counter()
    try:
        db.run(build)
    finally:
        done.set()
    build_s = time.perf_counter() - started
    in_memory = not any("no longer fits" in notice for notice in notices)
    log(f"vectors: HNSW build of {n:,} took {build_s:.0f} s ({'in memory' if in_memory else 'on disk'})")
    searches = {}
    for ef_search in ef_searches:
        index = PgVectorIndex(db, service, DIM, ef_search=ef_search)
        index.search(q[:3], K)  # warm the connection and the cache
        searches[ef_search] = one_at_a_time(lambda x, index=index: index.search(x, K)[1][0], q)

    def sizes(cur: Cursor) -> tuple[int, int]:
        cur.execute("SELECT pg_table_size(%s), pg_indexes_size(%s)", (table, table))
        table_bytes, index_bytes = cur.fetchone()
        return int(table_bytes), int(index_bytes)

    table_bytes, index_bytes = db.run(sizes)
    db.run(lambda cur: cur.execute(f"DROP TABLE {quote_ident(table)}"))
    return PgVectorRun(
        searches, load_s, build_s, memory_mb, build_workers, in_memory, table_bytes, index_bytes
    )


def vector_figures(
    dsn: str,
    sizes: list[int],
    pgvector_max: int,
    queries: int,
    build_memory_cap_mb: int,
    build_workers: int,
    ef_searches: list[int],
) -> list[str]:
    faiss.omp_set_num_threads(1)  # one thread per search, as the services run FAISS
    rng = np.random.default_rng(1)
    rows = []
    build_rate: float | None = None
    db = Database(dsn, pool_size=2, statement_timeout_s=3600)
    ensure_extension(db)
    try:
        for n in sizes:
            log(f"vectors: {n:,} x {DIM}")
            centres = unit_centres(max(10, n // 50), DIM, rng)
            data = clustered(n, DIM, centres, seed=n, spread=SPREAD)
            q = clustered(queries, DIM, centres, seed=n + 1, spread=SPREAD)
            # The flat index's search, on the data in place (an IndexFlat would copy 2 GB at 1M).
            truth, truth_lat = one_at_a_time(
                lambda x, data=data: faiss.knn(x, data, K, faiss.METRIC_INNER_PRODUCT)[1][0], q
            )
            ref = ms(truth_lat, 50)
            rows.append(
                f"| {n:,} | FAISS flat (exact) | {ref:.2f} | {ms(truth_lat, 99):.2f} | 1.00 | 1.000 | – |"
            )

            nlist = int(np.sqrt(n))  # 4 sqrt(n) lists would take k-means too long on two cores
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT)
            started = time.perf_counter()
            sample = data[rng.choice(n, min(n, 40 * nlist), replace=False)]
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            ivf.train(sample)
            ivf.add(data)
            faiss.omp_set_num_threads(1)
            ivf_build = time.perf_counter() - started
            ivf.nprobe = 16
            found, lat = one_at_a_time(lambda x, ivf=ivf: ivf.search(x, K)[1][0], q)
            rows.append(
                f"| {n:,} | FAISS IVF{nlist},Flat nprobe 16 | {ms(lat, 50):.2f} | {ms(lat, 99):.2f} "
                f"| {ms(lat, 50) / ref:.2f} | {recall_at(found, truth):.3f} | {ivf_build:.0f} s |"
            )
            del ivf

            if n > pgvector_max:
                assert build_rate is not None
                projected = n / build_rate * np.log(n) / np.log(pgvector_max)
                rows.append(
                    f"| {n:,} | pgvector HNSW | not measured | | | | projected ≈ {projected / 60:.0f} min "
                    f"(the rate at {pgvector_max:,}, times log n / log {pgvector_max:,}) |"
                )
                continue
            run = pgvector_search(db, data, q, build_memory_cap_mb, build_workers, ef_searches)
            build_rate = n / run.build_s
            where = "in memory" if run.in_memory else "finished on disk: the graph outgrew it"
            build = (
                f"{run.build_s:.0f} s (+ {run.load_s:.0f} s COPY; maintenance_work_mem "
                f"{run.build_memory_mb:,} MB, {run.build_workers} parallel worker(s), {where}); in "
                f"PostgreSQL table {run.table_bytes / 2**20:,.0f} MiB + HNSW index "
                f"{run.index_bytes / 2**20:,.0f} MiB = {(run.table_bytes + run.index_bytes) / n:,.0f} B "
                "per vector"
            )
            for ef_search, (found, lat) in run.searches.items():
                rows.append(
                    f"| {n:,} | pgvector HNSW ef_search {ef_search} | {ms(lat, 50):.2f} | {ms(lat, 99):.2f} "
                    f"| {ms(lat, 50) / ref:.2f} | {recall_at(found, truth):.3f} | {build} |"
                )
                build = "the same index"
    finally:
        db.close()
    return [
        f"**pgvector HNSW vs FAISS** ({DIM}-d clustered unit vectors, {queries} queries, k={K}, one "
        "query at a time, FAISS on one thread; recall@10 and latency ratio against FAISS flat):",
        "",
        "| vectors | index | p50 ms | p99 ms | p50 vs flat | recall@10 | build |",
        "|---:|---|---:|---:|---:|---:|---|",
        *rows,
    ]


def run(args: argparse.Namespace) -> str:
    sizes = args.sizes or ([2000] if args.small else [100_000, 1_000_000])
    queries = args.queries or (20 if args.small else 200)
    with tempfile.TemporaryDirectory(prefix="ambience-pgvector-") as tmpdir:
        pg = EmbeddedPostgres(Path(tmpdir) / "pgdata")
        admin = pg.start()
        try:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            out = [
                small_note(f"{sizes[0]:,} vectors, {queries} queries") if args.small else "",
                f"Machine: {machine()}; load average at the start {load} (a shared machine).",
                "",
                *vector_figures(
                    ensure_database(admin, "vectors"),
                    sizes,
                    args.pgvector_max,
                    queries,
                    args.pgvector_build_memory_mb,
                    args.pgvector_build_workers,
                    [int(ef) for ef in args.pgvector_ef_search.split(",")],
                ),
            ]
        finally:
            pg.release()
    return "\n".join(out)
