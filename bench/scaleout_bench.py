"""Past one machine: the PostgreSQL store, replica lag, pgvector vs FAISS, import on a Dask cluster.

Every figure is set against a reference measured in the same run, on this machine:

1. **Store** (phash, in-process through ``open_feature``): adds per second, one durable transaction
   per add as the service does, and search-by-id latency (the stored code is read from the store,
   the search runs in the in-memory FAISS index) with the PostgreSQL store; reference: the LMDB store.
2. **Replica lag** (two phash replica processes on one PostgreSQL): from the moment replica A
   acknowledges an add over HTTP to the moment replica B's index has applied it (B's ``/stats``
   index generation, polled every 2 ms), p50 and p99.
3. **pgvector HNSW vs FAISS**: 512-d unit vectors, clustered (n/50 Gaussian clusters, like
   embeddings; uniform random vectors have no neighbourhoods and every approximate index looks bad
   on them). Latency of one k=10 query and recall@10 against the exact answer (FAISS flat, the
   reference), for FAISS IVF (nlist sqrt(n), nprobe 16) and pgvector HNSW (m 16,
   ef_construction 64, ef_search 100, through the service's own ``PgVectorIndex``). The HNSW build
   gets the maintenance_work_mem the service's rule asks for (``hnsw_build_memory_mb``, capped by
   ``--pgvector-build-memory-mb``), so the graph is built in memory, and one parallel worker per
   other core; its progress is logged every 30 s. The row gives the table's and the index's size.
   pgvector stops at ``--pgvector-max`` vectors; for larger sizes the table shows the build time
   projected from the measured rate (marked as a projection).
4. **Import** (phash, ``ambience import --scheduler`` code path): images/s with a Dask
   ``LocalCluster`` of 1 and of 2 single-thread worker processes (reference: 1 worker).

    python -m bench.scaleout_bench [--small] [--parts store,lag,vectors,import] [--sizes 100000,1000000]
        [--pgvector-max 1000000] [--pgvector-ef-search 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import httpx
import numpy as np
import psycopg2

from ambience.importer import build_feature, run_import
from ambience_support.images import encode, synthetic_image
from ambience_support.photos import PHOTOS, photo_paths
from ambience_support.processes import ServiceProcess
from bench.timing import machine
from services.common.postgres.database import Cursor, Database, EmbeddedPostgres, ensure_database, quote_ident
from services.common.postgres.vectors import (
    PgVectorIndex,
    copy_rows,
    create_hnsw_index,
    ensure_extension,
    hnsw_build_memory_mb,
    table_name,
)
from services.common.schemas import SearchParams
from services.registry import SERVICES, open_feature

DIM = 512
K = 10
PARTS = ("store", "lag", "vectors", "import")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


# -- 1. store ------------------------------------------------------------------------------------------


def store_figures(tmp: Path, dsn: str, n: int, queries: int) -> list[str]:
    os.environ["AMBIENCE_PG_DSN"] = dsn
    # One FAISS thread per search, as the HTTP services run it (AMBIENCE_<SERVICE>_SEARCH_THREADS):
    # idle OpenMP threads spinning on both cores would starve the PostgreSQL backend otherwise.
    faiss.omp_set_num_threads(1)
    probe = build_feature("phash")
    probe.load()
    size = len(probe.extract(encode(synthetic_image(0))))
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]
    rows = []
    reference: tuple[float, float] | None = None
    for kind in ("lmdb", "postgres"):
        log(f"store: {n} adds and {queries} searches by id, {kind}")
        with open_feature("phash", tmp / kind / "phash", store=kind) as opened:
            started = time.perf_counter()
            for image_id, code in enumerate(codes):
                opened.collection.add(image_id, code)
            adds_per_s = n / (time.perf_counter() - started)
            feature, store = opened.feature, opened.collection.store
            params, search = feature.QueryParams(), SearchParams(k=K)
            samples = []
            for image_id in rng.integers(0, n, queries).tolist():
                started = time.perf_counter()
                feature.search_by_stored(image_id, store.get(image_id), search, params)
                samples.append(time.perf_counter() - started)
        p50, p99 = ms(samples, 50), ms(samples, 99)
        if reference is None:
            reference = (adds_per_s, p50)
        rows.append(
            f"| {kind} | {adds_per_s:,.0f} | {adds_per_s / reference[0]:.2f} | {p50:.2f} | {p99:.2f} "
            f"| {p50 / reference[1]:.2f} |"
        )
    return [
        f"**Store** (phash, {n:,} images, in-process, one durable transaction per add; search by id "
        f"k={K}, {queries} queries; ratios against LMDB):",
        "",
        "| store | adds/s | vs LMDB | search p50 ms | p99 ms | p50 vs LMDB |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


# -- 2. replica lag ------------------------------------------------------------------------------------


def lag_figures(tmp: Path, dsn: str, adds: int) -> list[str]:
    info = SERVICES["phash"]
    env = {"AMBIENCE_PG_DSN": dsn, f"{info.env_prefix}STORE": "postgres"}
    a = ServiceProcess(info.module, info.env_prefix, tmp / "a" / "phash", extra_env=env)
    b = ServiceProcess(info.module, info.env_prefix, tmp / "b" / "phash", extra_env=env)
    (tmp / "a").mkdir(parents=True)
    (tmp / "b").mkdir(parents=True)
    a.start(timeout=120)
    b.start(timeout=120)
    lags: list[float] = []
    try:
        with httpx.Client(timeout=60) as client:
            for i in range(adds):
                image = encode(synthetic_image(i, (160, 120)))
                r = client.post(
                    a.url + "/calculate_phash_features",
                    files={"image": ("x.jpg", image)},
                    data={"image_id": str(i)},
                )
                acked = time.perf_counter()
                r.raise_for_status()
                written = int(client.get(a.url + "/stats").json()["store"]["generation"])
                while int(client.get(b.url + "/stats").json()["index"]["generation"]) < written:
                    time.sleep(0.002)
                lags.append(time.perf_counter() - acked)
                time.sleep(0.05)  # one write at a time: the lag of a single write, not of a queue
    finally:
        a.stop()
        b.stop()
    return [
        f"**Replica lag** (phash, 2 replica processes, {adds} adds through A, until B's index has "
        "applied them; includes a `/stats` round trip to A, so it is an upper bound): "
        f"p50 **{ms(lags, 50):.1f} ms**, p99 **{ms(lags, 99):.1f} ms**, max {ms(lags, 100):.1f} ms.",
    ]


# -- 3. pgvector vs FAISS ------------------------------------------------------------------------------


def clustered(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        rows = centers[rng.integers(0, len(centers), m)] + 0.35 * rng.standard_normal((m, DIM)).astype(
            np.float32
        ) / np.sqrt(DIM)
        out[start : start + m] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


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
        found = np.empty((len(q), K), np.int64)
        lat = []
        for i in range(len(q)):
            started = time.perf_counter()
            _, found[i : i + 1] = index.search(q[i : i + 1], K)
            lat.append(time.perf_counter() - started)
        searches[ef_search] = (found, lat)

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
            centers = rng.standard_normal((max(10, n // 50), DIM)).astype(np.float32)
            centers /= np.linalg.norm(centers, axis=1, keepdims=True)
            data = clustered(n, rng, centers)
            q = clustered(queries, rng, centers)
            # The flat index's search, on the data in place (an IndexFlat would copy 2 GB at 1M).
            truth_lat: list[float] = []
            truth = np.empty((queries, K), np.int64)
            for i in range(queries):
                started = time.perf_counter()
                _, truth[i : i + 1] = faiss.knn(q[i : i + 1], data, K, faiss.METRIC_INNER_PRODUCT)
                truth_lat.append(time.perf_counter() - started)
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
            found = np.empty((queries, K), np.int64)
            lat = []
            for i in range(queries):
                started = time.perf_counter()
                _, found[i : i + 1] = ivf.search(q[i : i + 1], K)
                lat.append(time.perf_counter() - started)
            rows.append(
                f"| {n:,} | FAISS IVF{nlist},Flat nprobe 16 | {ms(lat, 50):.2f} | {ms(lat, 99):.2f} "
                f"| {ms(lat, 50) / ref:.2f} | {recall(found, truth):.3f} | {ivf_build:.0f} s |"
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
                    f"| {ms(lat, 50) / ref:.2f} | {recall(found, truth):.3f} | {build} |"
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


# -- 4. import on a Dask cluster -------------------------------------------------------------------------


def import_figures(tmp: Path, photos: list[Path], copies: int) -> list[str]:
    from distributed import LocalCluster

    folder = tmp / "import-photos"
    folder.mkdir()
    for c in range(copies):
        for i, photo in enumerate(photos):
            (folder / f"{c}-{i}{photo.suffix.lower()}").symlink_to(photo.resolve())
    files = copies * len(photos)
    warm_folder = tmp / "warm-photos"
    warm_folder.mkdir()
    for i, photo in enumerate(photos[:2]):
        (warm_folder / f"{i}{photo.suffix.lower()}").symlink_to(photo.resolve())
    rows = []
    reference: float | None = None
    for workers in (1, 2):
        log(f"import: {files} files on {workers} Dask worker(s)")
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            # Warm-up: each worker imports the service and compiles its kernels once (numba).
            warm = build_feature("phash", tmp / f"warm-{workers}" / "phash")
            run_import(warm, warm_folder, progress=False, scheduler=cluster.scheduler_address, chunk_size=1)
            feature = build_feature("phash", tmp / f"import-{workers}" / "phash")
            report = run_import(
                feature, folder, progress=False, scheduler=cluster.scheduler_address, chunk_size=8
            )
        assert report.added == files and not report.failures, report.summary()
        rate = report.images_per_s
        reference = reference or rate
        rows.append(f"| {workers} | {rate:.1f} | {rate / reference:.2f} |")
    return [
        f"**Import on a Dask cluster** (phash, {files} photo files, LocalCluster of single-thread "
        "worker processes on this machine, LMDB store; each worker warmed up by a small import first):",
        "",
        "| workers | images/s | vs 1 worker |",
        "|---:|---:|---:|",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run (small sizes)")
    parser.add_argument("--sizes", default=None, help="vector counts (default 100000,1000000)")
    parser.add_argument(
        "--pgvector-max", type=int, default=1_000_000, help="largest pgvector table built (larger: projected)"
    )
    parser.add_argument(
        "--pgvector-ef-search", default="100", help="comma list of hnsw.ef_search values searched"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma list of the parts measured (default all: {','.join(PARTS)})",
    )
    parser.add_argument(
        "--pgvector-build-memory-mb",
        type=int,
        default=4096,
        help="cap on maintenance_work_mem of an HNSW build (each asks for what its table needs)",
    )
    parser.add_argument(
        "--pgvector-build-workers",
        type=int,
        default=max(0, (os.cpu_count() or 1) - 1),
        help="parallel workers of an HNSW build besides the leader (default: one per other core)",
    )
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(set(parts) - set(PARTS))}; choose from {', '.join(PARTS)}")
    sizes = [int(s) for s in (args.sizes or ("2000" if args.small else "100000,1000000")).split(",")]
    photos = photo_paths(PHOTOS, limit=4 if args.small else 40)
    with tempfile.TemporaryDirectory(prefix="ambience-scaleout-") as tmpdir:
        tmp = Path(tmpdir)
        pg = EmbeddedPostgres(tmp / "pgdata")
        admin = pg.start()
        try:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            out = [f"Machine: {machine()}; load average at the start {load} (a shared machine).", ""]
            n_store, n_queries = (100, 30) if args.small else (3000, 300)
            if "store" in parts:
                out += store_figures(tmp / "store", ensure_database(admin, "store"), n_store, n_queries)
                out += [""]
            if "lag" in parts:
                out += lag_figures(tmp / "lag", ensure_database(admin, "lag"), 5 if args.small else 100)
                out += [""]
            if "vectors" in parts:
                out += vector_figures(
                    ensure_database(admin, "vectors"),
                    sizes,
                    args.pgvector_max,
                    20 if args.small else 200,
                    args.pgvector_build_memory_mb,
                    args.pgvector_build_workers,
                    [int(ef) for ef in args.pgvector_ef_search.split(",")],
                )
                out += [""]
            if "import" in parts and photos:
                out += import_figures(tmp, photos, 1 if args.small else 3)
            elif "import" in parts:
                out += [f"**Import on a Dask cluster**: not measured, no photos in {PHOTOS}."]
        finally:
            pg.release()
    print("\n".join(out))


if __name__ == "__main__":
    main()
