"""Gateway benchmarks against references measured in the same run.

1. /reverse_search overhead: for each query, the gateway's total time minus the slowest of the same
   service calls made directly (concurrently, as the gateway makes them).
2. Fan-out add throughput: `ambience index` through the gateway (catalog + spool + fan-out) versus a
   client sending the same images straight to every service with the same concurrency.

Runs phash and color as processes, the gateway as a process and an embedded PostgreSQL.

    python -m bench.gateway_bench [--photos DIR] [--queries 40] [--concurrency 4] [--small]

``--small``: 12 photos, 5 queries (the smoke test's size).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from ambience_support.photos import PHOTOS, REPO, photo_paths
from ambience_support.processes import ServiceProcess
from ambience_support.stacks import GatewayStack, launch_stack
from bench.timing import machine
from services.common.postgres.database import EmbeddedPostgres, ensure_database
from services.registry import SERVICES as REGISTRY

#: The services the gateway fans out to in this bench (their descriptors: module, env prefix, routes).
SERVICES = {name: REGISTRY[name] for name in ("phash", "color")}


def start(tmp: Path, dsn: str, name: str) -> GatewayStack:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    return launch_stack(tmp / name, dsn, list(SERVICES))


def direct_adds(services: dict[str, ServiceProcess], paths: list[Path], concurrency: int) -> None:
    with httpx.Client(timeout=120) as client:

        def add(item: tuple[int, Path]) -> None:
            image_id, path = item
            data = path.read_bytes()
            for name, svc in services.items():
                r = client.post(
                    f"{svc.url}/calculate_{SERVICES[name].store}",
                    files={"image": ("document", data)},
                    data={"image_id": str(image_id)},
                )
                r.raise_for_status()

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(add, enumerate(paths)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--small", action="store_true", help="12 photos, 5 queries")
    args = parser.parse_args()
    paths = photo_paths(args.photos, limit=12 if args.small else None)
    if args.small:
        args.queries = 5
    if not paths:
        sys.exit(f"no photos in {args.photos}")
    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        folder = args.photos
        if args.small:  # `ambience index` walks a folder: give it one holding just these photos
            folder = tmp / "photos"
            folder.mkdir()
            for path in paths:
                (folder / path.name).symlink_to(path.resolve())
        pg = EmbeddedPostgres(tmp / "pgdata")
        admin = pg.start()
        try:
            # -- add throughput: reference (straight to the services), then the CLI via the gateway
            stack = start(tmp, ensure_database(admin, "ref"), "ref")
            t = time.perf_counter()
            direct_adds(stack.services, paths, args.concurrency)
            direct_s = time.perf_counter() - t
            stack.stop()

            stack = start(tmp, ensure_database(admin, "gw"), "gw")
            t = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ambience",
                    "index",
                    str(folder),
                    "--gateway",
                    stack.url,
                    "--mapping",
                    str(tmp / "ids.csv"),
                    "--concurrency",
                    str(args.concurrency),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            cli_s = time.perf_counter() - t
            print(f"- `ambience index`: {done.stdout.strip()}")
            n = len(paths)
            print(
                f"- add throughput ({n} photos, {len(SERVICES)} services, concurrency {args.concurrency}): "
                f"direct {n / direct_s:.1f} img/s, `ambience index` via gateway {n / cli_s:.1f} img/s "
                f"(ratio {direct_s / cli_s:.2f}; CLI time includes its Python start-up)"
            )

            # -- reverse search overhead
            queries = [p.read_bytes() for p in paths[: args.queries]]
            overheads, totals, slowest = [], [], []
            with httpx.Client(timeout=60) as client, ThreadPoolExecutor(len(SERVICES)) as pool:

                def direct(item: tuple[str, bytes]) -> float:
                    name, data = item
                    t0 = time.perf_counter()
                    r = client.post(
                        f"{stack.services[name].url}/{name}_get_similar_images_by_image_buffer",
                        files={"image": ("document", data)},
                        data={"k": "20"},
                    )
                    r.raise_for_status()
                    return time.perf_counter() - t0

                for data in queries:
                    times = list(pool.map(direct, [(n, data) for n in SERVICES]))
                    t0 = time.perf_counter()
                    r = client.post(stack.url + "/reverse_search", files={"image": ("document", data)})
                    total = time.perf_counter() - t0
                    r.raise_for_status()
                    totals.append(total)
                    slowest.append(max(times))
                    overheads.append(total - max(times))
            ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
            print(
                f"- /reverse_search ({len(queries)} photo queries): gateway total p50 {ms(totals):.1f} ms, "
                f"slowest direct service p50 {ms(slowest):.1f} ms, overhead p50 {ms(overheads):.1f} ms "
                f"(p90 {sorted(overheads)[int(0.9 * len(overheads))] * 1000:.1f} ms)"
            )
            stack.stop()
        finally:
            pg.release()


if __name__ == "__main__":
    main()
