"""Duplicate groups of gateways that share one catalog follow each other's changes, through the
catalog's generation and change log of links, on a real PostgreSQL: each Explorer has its own
connection pool, as each gateway process does. Adds and deletes are recorded in the catalog as the
gateway's add path records them (begin_add and the links' add, begin_delete and the links' forget),
without services:
what is under test is how the groups in memory follow the catalog. tests/gateway/test_replicas.py
shows the same with gateway processes over HTTP."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from ambience_support.link_replicas import added, deleted, grouped, replica
from gateway.schema import COMPONENT, MIGRATIONS
from services.common.postgres.database import Database


def test_a_replica_applies_the_others_adds_and_deletes_and_reloads_after_their_rebuild(
    tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        async with replica(tmp_path, pg_dsn) as a, replica(tmp_path, pg_dsn) as b:
            assert await grouped(b) == []
            assert b.group_refreshes == {"whole": 1, "changes": 0}
            for image_id, links in ((1, []), (2, [(1, 10.0)]), (3, []), (4, [(2, 20.0), (3, 5.0)])):
                await asyncio.to_thread(added, a, image_id, links)
            assert await grouped(b) == [[1, 2, 3, 4]]
            assert b.group_refreshes == {"whole": 1, "changes": 1}  # A's four adds, applied
            await asyncio.to_thread(deleted, a, 2)
            assert await grouped(b) == [[3, 4]]
            assert b.group_refreshes == {"whole": 1, "changes": 2}

            # A's own add: applied to A's groups from the log, no whole reload
            assert await grouped(a) == [[3, 4]]
            await asyncio.to_thread(added, a, 5, [(1, 7.0)])
            assert await grouped(a) == [[1, 5], [3, 4]]
            assert a.group_refreshes == {"whole": 1, "changes": 1}
            # B applies A's add once; asked again, nothing changed: one query, nothing applied
            await grouped(b)
            await grouped(b)
            assert b.group_refreshes == {"whole": 1, "changes": 3}

            await asyncio.to_thread(a.links.replace, "copies", [(1, 3, 9.0), (3, 4, 9.0), (4, 5, 9.0)])
            assert await grouped(b) == [[1, 3, 4, 5]]
            assert b.group_refreshes == {"whole": 2, "changes": 3}
            # an image whose add recorded no links (its links could not be computed), linked to by a
            # later one: in the groups, as a whole load has it
            await asyncio.to_thread(a.catalog.begin_add, 6, [], "/spool/6.upload")
            await asyncio.to_thread(added, a, 7, [(6, 3.0)])
            assert await grouped(b) == [[1, 3, 4, 5], [6, 7]]
            # an add every service rejected (forgotten) and a delete still in flight (links not
            # dropped yet) leave the groups at once, as they leave a whole load
            await asyncio.to_thread(a.catalog.begin_add, 8, [], "/spool/8.upload")
            await asyncio.to_thread(added, a, 9, [(8, 2.0), (7, 2.0)])
            assert await grouped(b) == [[1, 3, 4, 5], [6, 7, 8, 9]]
            await asyncio.to_thread(a.catalog.forget, 8)
            await asyncio.to_thread(a.catalog.begin_delete, 6, [])
            assert await grouped(b) == [[1, 3, 4, 5], [7, 9]]
            reply = await b.duplicate_groups("copies")
            assert await a.duplicate_groups("copies") == reply
            async with replica(tmp_path, pg_dsn) as restarted:
                assert await restarted.duplicate_groups("copies") == reply
            # the other kind has its own generation: untouched by copies' changes but the deletes
            similar = await asyncio.to_thread(a.links.changes, "similar", 0)
            assert [c.change for c in similar.changes] == ["remove"] * 4  # begin_delete, the links' forget...
            assert similar.generation == 4 and [c.image_id for c in similar.changes] == [2, 2, 8, 6]

    asyncio.run(scenario())


def test_a_replica_behind_the_kept_changes_reloads_whole(tmp_path: Path, pg_dsn: str) -> None:
    async def scenario() -> None:
        async with replica(tmp_path, pg_dsn, kept=3) as a, replica(tmp_path, pg_dsn, kept=3) as b:
            await asyncio.to_thread(added, a, 1, [])
            assert await grouped(b) == []
            for image_id in range(2, 7):  # five changes: the log keeps the last three
                await asyncio.to_thread(added, a, image_id, [(image_id - 1, 1.0)])
            assert await grouped(b) == [[1, 2, 3, 4, 5, 6]]
            assert b.group_refreshes == {"whole": 2, "changes": 0}
            await asyncio.to_thread(added, a, 7, [(6, 1.0)])
            assert await grouped(b) == [[1, 2, 3, 4, 5, 6, 7]]
            assert b.group_refreshes == {"whole": 2, "changes": 1}

    asyncio.run(scenario())


def test_concurrent_adds_deletes_and_requests_settle_on_the_catalogs_groups(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Adds in flight at once on both replicas (links to images whose own add is not recorded yet
    among them), deletes, and requests on both between them: at the end each replica answers what
    a gateway started afresh loads from the catalog."""
    rng = random.Random(18)
    operations: list[tuple[str, int, list[tuple[int, float]]]] = []
    for image_id in range(1, 61):
        others = rng.sample(range(1, 61), 2) if rng.random() < 0.6 else []
        links = [(other, float(rng.randint(1, 50))) for other in others if other != image_id]
        operations.append(("add", image_id, links))
    for image_id in rng.sample(range(1, 61), 10):
        operations.append(("delete", image_id, []))

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(replica(tmp_path, pg_dsn))
            b = await stack.enter_async_context(replica(tmp_path, pg_dsn))

            async def apply(n: int, op: str, image_id: int, links: list[tuple[int, float]]) -> Any:
                writer = (a, b)[n % 2]
                if op == "add":
                    return await asyncio.to_thread(added, writer, image_id, links)
                await asyncio.sleep(0.05)  # after most adds: deletes of ids not added yet do nothing
                return await asyncio.to_thread(deleted, writer, image_id)

            work = [apply(n, *operation) for n, operation in enumerate(operations)]
            work += [grouped((a, b)[n % 2]) for n in range(20)]
            rng.shuffle(work)
            await asyncio.gather(*work)
            final_a, final_b = await a.duplicate_groups("copies"), await b.duplicate_groups("copies")
            async with replica(tmp_path, pg_dsn) as restarted:
                expected = await restarted.duplicate_groups("copies")
            assert expected["groups"], "the scenario should leave some groups"
            assert final_a == expected and final_b == expected
            assert a.group_refreshes["whole"] == b.group_refreshes["whole"] == 1

    asyncio.run(scenario())


def test_a_catalog_from_before_the_log_migrates_and_its_links_load_whole(tmp_path: Path, pg_dsn: str) -> None:
    """Links recorded by a gateway of the previous schema (no generation) are all there after the
    migration; the change log starts from them."""
    older = Database(pg_dsn, migrations={COMPONENT: MIGRATIONS[:5]})
    try:

        def record(cur: Any) -> None:
            for image_id in (1, 2, 3):
                cur.execute("INSERT INTO gateway_images (image_id, op) VALUES (%s, 'add')", (image_id,))
            cur.execute(
                "INSERT INTO gateway_links (kind, image_id, other_id, distance) VALUES ('copies', 2, 1, 4)"
            )

        older.run(record)
    finally:
        older.close()

    async def scenario() -> None:
        async with replica(tmp_path, pg_dsn) as a, replica(tmp_path, pg_dsn) as b:
            assert await grouped(a) == await grouped(b) == [[1, 2]]
            await asyncio.to_thread(a.links.add, "copies", 3, [(2, 5.0)])
            assert await grouped(b) == [[1, 2, 3]]
            assert b.group_refreshes == {"whole": 1, "changes": 1}

    asyncio.run(scenario())
