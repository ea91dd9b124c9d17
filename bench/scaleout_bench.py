"""Past one machine: the PostgreSQL store, replica lag, import on a Dask cluster.

Every figure is set against a reference measured in the same run, on this machine:

1. **Store** (phash, in-process through ``open_feature``): adds per second, one durable transaction
   per add as the service does, and search-by-id latency (the stored code is read from the store,
   the search runs in the in-memory FAISS index) with the PostgreSQL store; reference: the LMDB store.
2. **Replica lag** (two phash replica processes on one PostgreSQL): from the moment replica A
   acknowledges an add over HTTP to the moment replica B's index has applied it (B's ``/stats``
   index generation, polled every 2 ms), p50 and p99.
3. **Import** (phash, ``ambience import --scheduler`` code path): images/s with a Dask
   ``LocalCluster`` of 1 and of 2 single-thread worker processes (reference: 1 worker).

pgvector HNSW against FAISS at 100k and 1M vectors, which was part of this script, is the ``pgvector``
part of ``python -m bench.scale_bench`` (the latency and memory of every index kind).

    python -m bench.scaleout_bench [--small] [--parts store,lag,import]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import faiss
import httpx
import numpy as np

from ambience.importer import build_feature, run_import
from ambience_support.images import encode, synthetic_image
from ambience_support.photos import PHOTOS, photo_paths
from ambience_support.processes import ServiceProcess
from bench.harness import progress
from bench.timing import machine
from bench.timing import percentile_ms as ms
from services.common.postgres.database import EmbeddedPostgres, ensure_database
from services.common.schemas import SearchParams
from services.registry import SERVICES, open_feature

K = 10
PARTS = ("store", "lag", "import")


log = progress("scaleout_bench")


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
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma list of the parts measured (default all: {','.join(PARTS)})",
    )
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(set(parts) - set(PARTS))}; choose from {', '.join(PARTS)}")
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
            if "import" in parts and photos:
                out += import_figures(tmp, photos, 1 if args.small else 3)
            elif "import" in parts:
                out += [f"**Import on a Dask cluster**: not measured, no photos in {PHOTOS}."]
        finally:
            pg.release()
    print("\n".join(out))


if __name__ == "__main__":
    main()
