"""Duplicate group pages and decisions: what a page of groups and a decision cost at scale.

A catalog in an embedded PostgreSQL filled directly (no services): N added images (``--small``:
5,000; default 100,000) with facts (size, format, file name, capture time) and a sharpness, N/10
groups of 2-5 of them linked as copies (10,000 groups of 35,000 images at 100,000 images). Two gateways'
duplicate groups (each its own connection pool, as two processes): A records what the add path and
a person record (links, decisions), B answers ``/duplicate_groups`` pages as the route does
(in-process: the reply as the route returns it, without HTTP).

Measured on B: the first page (the groups loaded whole and every group described), a page of an
unchanged generation (order by size and by space, first and last page), the page after one add of
A's (the changes applied, only the changed group described again), after a decision of A's (the
decisions read again, the groups they touch re-split), and the per-add cost with 0 and with 1,000
decisions held (A's link write, B's page after it).

    python -m bench.duplicate_pages_bench [--small] [--size N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ambience_support.link_replicas import Replica, replica
from ambience_support.pg import scratch_server
from bench.timing import machine, p50_p95, timed_ms
from gateway.duplicates.service import GroupsBody
from services.common.postgres.database import Cursor, ensure_database

ADDS = 100
PAGE_SIZE = 50
DECISIONS_HELD = 1000


def progress(message: str) -> None:
    print(f"[duplicate_pages_bench] {message}", file=sys.stderr, flush=True)


def fill(run: Callable[[Callable[[Cursor], Any]], Any], size: int) -> list[int]:
    """``size`` images; from image 0 on, ``size`` / 10 groups of 2-5 consecutive ids (cycling: 35% of
    the images), each linked in a chain. Returns the first image of each group."""

    def write(cur: Cursor) -> list[int]:
        cur.execute(
            "INSERT INTO gateway_images (image_id, op) SELECT i, 'add' FROM generate_series(0, %s - 1) i",
            (size,),
        )
        cur.execute(
            "INSERT INTO gateway_image_info"
            " (image_id, width, height, bytes, format, file_name, captured_at, kind)"
            " SELECT i, 4000 - (i %% 3) * 1000, 3000 - (i %% 3) * 750, 500000 + (i * 7919) %% 4000000,"
            " (ARRAY['JPEG', 'HEIC', 'DNG', 'PNG'])[1 + i %% 4],"
            " 'folder' || (i %% 50) || '/IMG_' || i || '.jpg',"
            " timestamp '2020-01-01' + make_interval(secs => i * 37), 'photo'"
            " FROM generate_series(0, %s - 1) i",
            (size,),
        )
        cur.execute(
            "INSERT INTO gateway_image_sharpness (image_id, sharpness)"
            " SELECT i, 100 + (i * 31) %% 900 FROM generate_series(0, %s - 1) i",
            (size,),
        )
        links, starts, image = [], [], 0
        while len(starts) < size // 10:
            length = 2 + len(starts) % 4
            links += [(i + 1, i, float(10 + i % 50)) for i in range(image, image + length - 1)]
            starts.append(image)
            image += length
        cur.executemany(
            "INSERT INTO gateway_links (kind, image_id, other_id, distance) VALUES ('copies', %s, %s, %s)",
            links,
        )
        return starts

    return list(run(write))


async def page(b: Replica, **body: Any) -> dict[str, Any]:
    return await b.groups.groups(GroupsBody(kind="copies", page_size=PAGE_SIZE, **body))


async def adds_then_pages(
    a: Replica, b: Replica, first_id: int, size: int
) -> tuple[list[float], list[float]]:
    """ADDS images added by A, each linked into an existing group; B's page after each."""
    writes, pages = [], []
    for n in range(ADDS):
        image_id = first_id + n
        a.catalog.begin_add(image_id, [], f"/spool/{image_id}.upload")
        started = time.perf_counter()
        a.links.add("copies", image_id, [((n * 97) % (size // 10), 20.0)])
        writes.append((time.perf_counter() - started) * 1000)
        pages.append(await timed_ms(lambda: page(b)))
    return writes, pages


async def measure(a: Replica, b: Replica, size: int, starts: list[int]) -> list[str]:
    groups = len(starts)
    lines = ["| step | ms |", "|---|---|"]
    cold = await timed_ms(lambda: page(b))
    first = await page(b)
    assert first["totals"]["groups"] == groups, first["totals"]
    lines.append(
        f"| B: first page (whole load of {size:,} images, {groups:,} groups described) | {cold:,.0f} |"
    )
    progress(f"first page {cold:.0f} ms")
    last = first["pages"]
    for order in ("size", "space"):
        await page(b, order=order)
        warm = [await timed_ms(lambda o=order, n=n: page(b, order=o, page=n)) for n in (1, last) * 20]
        step = f"B: a page of {PAGE_SIZE}, unchanged generation, order {order} (first, last)"
        lines.append(f"| {step} | {p50_p95(warm)} |")
    cursor = first["next"]
    walked = [await timed_ms(lambda: page(b, after=cursor)) for _ in range(20)]
    lines.append(f"| B: the page after a cursor | {p50_p95(walked)} |")
    progress("warm pages measured")

    writes, after_add = await adds_then_pages(a, b, size, size)
    lines.append(f"| A: one add's links written | {p50_p95(writes)} |")
    lines.append(f"| B: the page after one add of A's | {p50_p95(after_add)} |")
    decide, after_decision = [], []
    for n in range(20):
        ids = [starts[n], starts[n] + 1]  # two linked images of one group
        started = time.perf_counter()
        a.groups.decisions.add("not_duplicates", "copies", ids)
        decide.append((time.perf_counter() - started) * 1000)
        after_decision.append(await timed_ms(lambda: page(b)))
    lines.append(f"| A: a decision recorded (checked against those held) | {p50_p95(decide)} |")
    lines.append(f"| B: the page after a decision of A's | {p50_p95(after_decision)} |")
    progress("adds and decisions measured")

    for n in range(DECISIONS_HELD):  # spread over the groups
        start = starts[20 + n * (groups - 20) // DECISIONS_HELD]
        a.groups.decisions.add("not_duplicates", "copies", [start, start + 1])
    await page(b)
    writes_held, after_add_held = await adds_then_pages(a, b, size + ADDS, size)
    lines.append(
        f"| A: one add's links written, {DECISIONS_HELD:,} decisions held | {p50_p95(writes_held)} |"
    )
    step = f"B: the page after one add of A's, {DECISIONS_HELD:,} decisions held"
    lines.append(f"| {step} | {p50_p95(after_add_held)} |")
    ratio = float(np.median(after_add_held) / np.median(after_add))
    lines.append(f"| ratio of B's page after an add, with / without the decisions | {ratio:.2f} |")
    whole = await timed_ms(lambda: b.groups.groups(GroupsBody(kind="copies")))
    lines.append(f"| B: every group in one reply (no page_size), for scale | {whole:,.0f} |")
    assert b.groups.follower.refreshes["whole"] == 1, b.groups.follower.refreshes
    return lines


async def run(tmp: Path, dsn: str, size: int) -> list[str]:
    async with replica(tmp / "a", dsn) as a, replica(tmp / "b", dsn) as b:
        starts = fill(a.links.db.run, size)
        progress(f"{size:,} images, {len(starts):,} groups in the catalog")
        return await measure(a, b, size, starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5,000 images (smoke test)")
    parser.add_argument("--size", type=int, default=0, help="images in the catalog (default 100,000)")
    args = parser.parse_args()
    size = args.size or (5_000 if args.small else 100_000)
    print(f"Machine: {machine()}.\n")
    with scratch_server() as (tmp, admin):
        lines = asyncio.run(run(tmp, ensure_database(admin, "gw"), size))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
