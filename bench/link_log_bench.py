"""Duplicate groups across gateway replicas: what following the catalog's log of links costs.

Two gateways' Explorers (each its own connection pool, as two processes) over one catalog in an
embedded PostgreSQL holding N added images (``--small``: 5,000; default 100,000), every tenth
linked as a copy of the one before (N/10 groups of two). Replica A records adds as the add path
does (``Catalog.add_links``: the generation bumped, the change logged, the link stored, one
transaction); replica B brings its groups up to date as a ``/duplicate_groups`` request does before
it answers. Measured: B's whole load, A's ``add_links`` per add, B's update after each single add
of A's (the log query, the added image's links, the group update), B's check when nothing changed
(one query), B's update after a batch of 1,000 adds, and a whole ``/duplicate_groups`` reply of
B's for scale (every group described: the catalog's sizes of their members, distances to the
keeper).

    python -m bench.link_log_bench [--small] [--size N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from ambience_support.pg import scratch_server
from bench.timing import machine, p50_p95, timed_ms
from gateway.catalog import Catalog
from gateway.duplicates import schema as duplicates_schema
from gateway.duplicates.links import PostgresLinkStore
from gateway.duplicates.service import DuplicateGroups
from gateway.image_facts import ImageFacts
from gateway.proxy import ServiceClients
from gateway.reverse_search import ReverseSearch
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources
from services.common.postgres.database import Cursor, Database, ensure_database

ADDS = 200
BATCH = 1000


def progress(message: str) -> None:
    print(f"[link_log_bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Replica:
    """What one gateway holds of the duplicate groups, over its own connection pool."""

    catalog: Catalog
    links: PostgresLinkStore
    groups: DuplicateGroups
    db: Database
    clients: ServiceClients


def replica_over(tmp: Path, dsn: str) -> Replica:
    settings = GatewaySettings(data_dir=tmp / "gateway", services=[])
    clients = ServiceClients(settings, CollectorRegistry())
    db = Database(
        dsn, migrations={COMPONENT: MIGRATIONS, duplicates_schema.COMPONENT: duplicates_schema.MIGRATIONS}
    )
    links, facts = PostgresLinkStore(db), ImageFacts(db)
    search = ReverseSearch(settings, clients, [], facts)
    groups = DuplicateGroups.build(
        settings, clients, AnalysisSources(settings, clients, []), search, facts, links, db
    )
    return Replica(Catalog(db, removals=links), links, groups, db, clients)


def fill(db: Database, size: int) -> None:
    """``size`` added images, image 10k+1 a copy of 10k (recorded as a gateway of the previous
    schema would have: no change logged)."""

    def run(cur: Cursor) -> None:
        cur.execute(
            "INSERT INTO gateway_images (image_id, op) SELECT i, 'add' FROM generate_series(0, %s - 1) i",
            (size,),
        )
        cur.execute(
            "INSERT INTO gateway_image_info (image_id, width, height, bytes)"
            " SELECT i, 640, 480, 100000 + i FROM generate_series(0, %s - 1) i",
            (size,),
        )
        cur.execute(
            "INSERT INTO gateway_links (kind, image_id, other_id, distance)"
            " SELECT 'copies', i + 1, i, 40 FROM generate_series(0, %s - 2, 10) i",
            (size,),
        )

    db.run(run)


async def measure(a: Replica, b: Replica, size: int) -> list[str]:
    async def b_update() -> None:
        async with b.groups.follower.current("copies"):
            pass

    lines = ["| step | ms |", "|---|---|"]
    whole = await timed_ms(b_update)
    lines.append(f"| B: whole load ({size:,} images, {size // 10:,} links) | {whole:,.0f} |")
    progress(f"whole load {whole:.0f} ms")
    adds, updates, checks = [], [], []
    for n in range(ADDS):
        image_id = size + n
        a.catalog.begin_add(image_id, [], f"/spool/{image_id}.upload")
        started = time.perf_counter()
        a.links.add("copies", image_id, [((n * 10 + 5) % size, 30.0)])
        adds.append((time.perf_counter() - started) * 1000)
        updates.append(await timed_ms(b_update))
        checks.append(await timed_ms(b_update))
    assert b.groups.follower.refreshes == {"whole": 1, "changes": ADDS}, b.groups.follower.refreshes
    lines.append(
        f"| A: the links' add per add (generation, log, link: one transaction) | {p50_p95(adds, 2)} |"
    )
    lines.append(f"| B: update after one add of A's | {p50_p95(updates, 2)} |")
    lines.append(f"| B: check, nothing changed (one query) | {p50_p95(checks, 2)} |")
    progress("single adds measured")
    for n in range(BATCH):
        image_id = size + ADDS + n
        a.catalog.begin_add(image_id, [], f"/spool/{image_id}.upload")
        a.links.add("copies", image_id, [((n * 10 + 3) % size, 30.0)])
    batch = await timed_ms(b_update)
    lines.append(f"| B: update after {BATCH:,} adds of A's | {batch:,.0f} |")
    reply = await timed_ms(lambda: b.groups.groups("copies"))
    groups = len((await b.groups.groups("copies"))["groups"])
    lines.append(f"| B: a whole `/duplicate_groups` reply ({groups:,} groups), for scale | {reply:,.0f} |")
    assert b.groups.follower.refreshes["whole"] == 1, b.groups.follower.refreshes
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5,000 images (smoke test)")
    parser.add_argument("--size", type=int, default=0, help="images in the catalog (default 100,000)")
    args = parser.parse_args()
    size = args.size or (5_000 if args.small else 100_000)
    print(f"Machine: {machine()}.\n")
    with scratch_server() as (tmp, admin):
        dsn = ensure_database(admin, "gw")
        a, b = replica_over(tmp / "a", dsn), replica_over(tmp / "b", dsn)
        try:
            fill(a.db, size)
            progress(f"{size:,} images in the catalog")
            lines = asyncio.run(measure(a, b, size))
        finally:
            for replica in (a, b):
                asyncio.run(replica.clients.close())
                replica.db.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
