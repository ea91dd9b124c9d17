"""The fan-out writer driven directly (no gateway HTTP): real phash and color services (in-process,
served over HTTP: ambience_support.inprocess), a real PostgreSQL catalog, a spool on disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import inprocess_services
from ambience_support.pg import TestServer
from ambience_support.processes import free_port
from ambience_support.proxies import RateLimitingProxy
from gateway.backlog import Backlog
from gateway.catalog import DONE, FAILED, PENDING, REJECTED, Catalog, CatalogConflict
from gateway.proxy import CallResult, ServiceClients
from gateway.retries import RetryWorker
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.writer import (
    GAVE_UP_BEFORE_ADD,
    FanOutWriter,
    ImageRejected,
    KeyedLocks,
    Spool,
    add_outcome,
    delete_outcome,
)
from services.common.errors import DatabaseUnavailable
from services.common.postgres.database import PostgresComponent, PostgresSettings

NAMES = ["phash", "color"]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[dict[str, str]]:
    with inprocess_services(
        tmp_path_factory.mktemp("writer"), pg_server.new_database("writer"), NAMES
    ) as running:
        yield {name: svc.url for name, svc in running.items()}


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@asynccontextmanager
async def opened_writer(
    tmp_path: Path, dsn: str, urls: dict[str, str], catalog: bool = True, **overrides: Any
) -> AsyncIterator[tuple[FanOutWriter, RetryWorker]]:
    """A writer and its retry worker as the gateway builds them, over the services at ``urls``;
    retries due at once (the tests run the worker's passes themselves)."""
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway",
        services=NAMES,
        service_urls=urls,
        **{"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.01, "timeout_s": 20, **overrides},
    )
    clients = ServiceClients(settings, CollectorRegistry())
    postgres = PostgresComponent(PostgresSettings(dsn=dsn), {COMPONENT: MIGRATIONS}, "test-writer")
    ledger = Catalog(
        postgres, settings.retry_backoff_s, settings.retry_backoff_max_s, settings.retry_max_attempts
    )
    writer = FanOutWriter(
        settings, clients, Spool(settings.resolved_data_dir() / "spool"), NAMES, ledger, Backlog(postgres)
    )
    if catalog:  # else the database is never opened: every catalog call is DatabaseUnavailable
        await asyncio.to_thread(postgres.open)
    try:
        yield writer, RetryWorker(settings, clients, Backlog(postgres), writer)
    finally:
        await clients.close()
        await asyncio.to_thread(postgres.close)


def stored(url: str, service: str, image_id: int) -> bool:
    reply = httpx.post(
        f"{url}/{service}_get_similar_images_by_id", json={"image_id": image_id, "k": 1}, timeout=10
    )
    assert reply.status_code in (200, 404), reply.text
    return reply.status_code == 200


def picture(seed: int) -> bytes:
    return encode(synthetic_image(seed, (160, 120)))


async def retry_until_settled(writer: FanOutWriter, retries: RetryWorker, timeout: float = 30) -> None:
    """Retry passes until nothing is pending (the backoff is 10 ms)."""
    deadline = time.monotonic() + timeout
    while (await writer.stats())["pending_parts"]:
        assert time.monotonic() < deadline, await writer.stats()
        await asyncio.sleep(0.05)
        await retries.retry_due()


def test_an_add_reaches_every_service_and_leaves_nothing_spooled(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        async with opened_writer(tmp_path, pg_dsn, services) as (writer, _retries):
            outcomes = await writer.add(101, picture(101))
            assert {s: (o.state, o.status) for s, o in outcomes.items()} == {
                "phash": (DONE, "ok"),
                "color": (DONE, "ok"),
            }
            status = await writer.status([101])
            assert status[101]["state"] == "complete"
            assert (await writer.stats())["spool_files"] == 0
            assert len(writer.locks) == 0  # the id's lock is dropped once released
            with pytest.raises(CatalogConflict):
                await writer.add(101, picture(101))

    asyncio.run(scenario())
    assert all(stored(services[s], s, 101) for s in NAMES)


def test_a_part_that_failed_is_retried_from_the_spool_after_a_restart(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        color_down = {**services, "color": down_url()}
        async with opened_writer(tmp_path, pg_dsn, color_down) as (writer, retries):
            outcomes = await writer.add(102, picture(102))
            assert (outcomes["phash"].state, outcomes["color"].state) == (DONE, PENDING)
            assert outcomes["color"].status == "unavailable"
            assert (await writer.stats())["spool_files"] == 1
            await asyncio.sleep(0.05)
            assert await retries.retry_due() == 1  # still down: the part stays pending
            assert (await writer.stats())["pending_parts"] == {"color": 1}

        # A new writer (a restarted gateway) on the same catalog and spool, color reachable again.
        async with opened_writer(tmp_path, pg_dsn, services) as (writer, retries):
            await retry_until_settled(writer, retries)
            assert (await writer.status([102]))[102]["state"] == "complete"
            assert (await writer.stats())["spool_files"] == 0

    asyncio.run(scenario())
    assert stored(services["color"], "color", 102)


def test_a_delete_cancels_the_pending_add_so_no_retry_brings_the_image_back(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        color_down = {**services, "color": down_url()}
        async with opened_writer(tmp_path, pg_dsn, color_down) as (writer, retries):
            await writer.add(103, picture(103))
            deleted = await writer.delete(103)
            assert deleted["phash"] == (DONE, "ok", None)
            assert (deleted["color"].state, deleted["color"].status) == (PENDING, "unavailable")
            assert (await writer.stats())["spool_files"] == 0  # the add's upload went with it
            assert (await writer.status([103]))[103]["state"] == "deleting"

        async with opened_writer(tmp_path, pg_dsn, services) as (writer, retries):
            await retry_until_settled(writer, retries)
            assert await writer.status([103]) == {}
            assert (await writer.stats())["deleting"] == 0

    asyncio.run(scenario())
    assert not stored(services["phash"], "phash", 103) and not stored(services["color"], "color", 103)


def test_an_add_waits_behind_a_pending_delete_and_a_refused_one_leaves_the_delete(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        color_down = {**services, "color": down_url()}
        async with opened_writer(tmp_path, pg_dsn, color_down) as (writer, retries):
            await writer.add(111, picture(111))
            await writer.delete(111)  # color's delete pending
            # Bad input on the id: phash refuses it, color never gets it (its delete comes first).
            with pytest.raises(ImageRejected):
                await writer.add(111, b"not an image at all")
            entry = (await writer.status([111]))[111]
            assert entry["state"] == "deleting" and set(entry["parts"]) == {"color"}
            assert entry["parts"]["color"]["add_queued"] is False
            assert (await writer.stats())["spool_files"] == 0
            # A real picture: phash gets it now, color's part is the delete with the add queued.
            outcomes = await writer.add(111, picture(1111))
            assert (outcomes["phash"].state, outcomes["color"].state) == (DONE, PENDING)
            color = (await writer.status([111]))[111]["parts"]["color"]
            assert (color["op"], color["add_queued"]) == ("delete", True)

        async with opened_writer(tmp_path, pg_dsn, services) as (writer, retries):
            await retry_until_settled(writer, retries)
            entry = (await writer.status([111]))[111]
            assert entry["state"] == "complete"
            assert {p["op"] for p in entry["parts"].values()} == {"add"}
            assert (await writer.stats())["spool_files"] == 0

    asyncio.run(scenario())
    assert all(stored(services[s], s, 111) for s in NAMES)


def test_an_add_behind_a_delete_that_gave_up_is_named_and_sent_by_catalog_retry(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        color_down = {**services, "color": down_url()}
        async with opened_writer(tmp_path, pg_dsn, color_down, retry_max_attempts=2) as (writer, retries):
            await writer.add(112, picture(112))
            await writer.delete(112)  # color: attempt 1 of its delete
            await asyncio.sleep(0.05)
            assert await retries.retry_due() == 1  # attempt 2: gives up
            outcomes = await writer.add(112, picture(1112))
            assert outcomes["phash"].state == DONE
            assert outcomes["color"] == (FAILED, "failed", GAVE_UP_BEFORE_ADD)
            entry = (await writer.status([112]))[112]
            assert entry["state"] == "failed" and entry["parts"]["color"]["add_queued"] is True

        async with opened_writer(tmp_path, pg_dsn, services, retry_max_attempts=2) as (writer, retries):
            assert await retries.retry_now([112]) == 1
            await retry_until_settled(writer, retries)
            assert (await writer.status([112]))[112]["state"] == "complete"
            assert (await writer.stats())["spool_files"] == 0

    asyncio.run(scenario())
    assert stored(services["color"], "color", 112)


def test_an_image_every_service_refuses_is_forgotten(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        async with opened_writer(tmp_path, pg_dsn, services) as (writer, _retries):
            with pytest.raises(ImageRejected) as refused:
                await writer.add(104, b"not an image at all")
            assert refused.value.status_code == 422
            assert set(refused.value.details) == set(NAMES)
            assert "not a recognised image" in str(refused.value)
            assert await writer.status([104]) == {}
            assert (await writer.stats())["spool_files"] == 0
            # The id stays free: a real picture under it is accepted.
            assert {o.state for o in (await writer.add(104, picture(104))).values()} == {DONE}

    asyncio.run(scenario())


def test_a_retry_whose_spooled_upload_vanished_is_rejected_not_looped(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        async with opened_writer(tmp_path, pg_dsn, {**services, "color": down_url()}) as (writer, retries):
            await writer.add(105, picture(105))
            for path in writer.spool.files():
                path.unlink()
        async with opened_writer(tmp_path, pg_dsn, services) as (writer, retries):
            await retry_until_settled(writer, retries)
            parts = (await writer.status([105]))[105]["parts"]
            assert parts["color"]["status"] == REJECTED
            assert "spooled upload is missing" in parts["color"]["error"]

    asyncio.run(scenario())


def test_without_a_catalog_every_operation_is_database_unavailable(tmp_path: Path, pg_dsn: str) -> None:
    async def scenario() -> None:
        async with opened_writer(tmp_path, pg_dsn, {}, catalog=False) as (writer, retries):
            with pytest.raises(DatabaseUnavailable):
                await writer.add(1, picture(1))
            with pytest.raises(DatabaseUnavailable):
                await writer.delete(1)
            assert await retries.retry_due() == 0  # the worker keeps going
            assert writer.spool.files() == []

    asyncio.run(scenario())


def test_outcome_rules() -> None:
    def result(outcome: str, code: int | None) -> CallResult:
        return CallResult("color", outcome, code, detail=None if code == 200 else f"HTTP {code}")

    assert add_outcome(result("ok", 200)) == (DONE, "ok", None)
    assert add_outcome(result("failed", 409)) == (DONE, "ok", "already stored")
    assert add_outcome(result("failed", 422)) == (REJECTED, "failed", "HTTP 422")
    assert add_outcome(result("failed", 503)) == (PENDING, "failed", "HTTP 503")
    assert add_outcome(result("unavailable", None)).state == PENDING
    assert add_outcome(result("failed", 501)) == (FAILED, "failed", "HTTP 501")  # permanent: not retried
    assert delete_outcome(result("ok", 200)) == (DONE, "ok", None)
    assert delete_outcome(result("failed", 404)) == (DONE, "failed", "HTTP 404")
    assert delete_outcome(result("failed", 500)).state == PENDING
    assert delete_outcome(result("unavailable", None)).state == PENDING
    # 429: too many requests, nothing done: sent again, never rejected nor counted as deleted
    assert add_outcome(result("failed", 429)) == (PENDING, "failed", "HTTP 429")
    assert delete_outcome(result("failed", 429)) == (PENDING, "failed", "HTTP 429")


def test_a_rate_limited_service_gets_the_add_and_the_delete_once_it_lets_them_through(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    """color behind a rate-limiting proxy that answers 429 to the first requests of each kind: the
    add and the delete stay pending and the retry worker finishes both."""
    with RateLimitingProxy(services["color"], refuse_first=1) as proxy:

        async def scenario() -> None:
            async with opened_writer(tmp_path, pg_dsn, {**services, "color": proxy.url}) as (writer, retries):
                outcomes = await writer.add(105, picture(105))
                assert (outcomes["phash"].state, outcomes["color"].state) == (DONE, PENDING)
                assert "429" in (outcomes["color"].detail or "")
                await retry_until_settled(writer, retries)
                assert (await writer.status([105]))[105]["state"] == "complete"
                assert stored(services["color"], "color", 105)
                deleted = await writer.delete(105)
                assert deleted["color"].state == PENDING  # refused, not "not stored"
                assert stored(services["color"], "color", 105)
                await retry_until_settled(writer, retries)
                assert await writer.status([105]) == {}

        asyncio.run(scenario())
        assert proxy.refused == {"/calculate_color_features": 1, "/delete_color_features": 1}
    assert not stored(services["color"], "color", 105)


def test_keyed_locks_serialise_one_id_and_leave_others_free() -> None:
    async def scenario() -> list[str]:
        locks, events = KeyedLocks(), []

        async def work(key: int, name: str, pause: float) -> None:
            async with locks.hold(key):
                events.append(f"{name} in")
                await asyncio.sleep(pause)
                events.append(f"{name} out")

        first = asyncio.create_task(work(1, "a", 0.05))
        await asyncio.sleep(0)
        await asyncio.gather(work(1, "b", 0), work(2, "c", 0), first)
        assert len(locks) == 0
        return events

    events = asyncio.run(scenario())
    assert events.index("a out") < events.index("b in")  # same id: one after the other
    assert events.index("c out") < events.index("a out")  # another id does not wait


def test_the_spool_keeps_bytes_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.write(7, b"bytes")
    assert Spool.read(path) == b"bytes" and spool.files() == [Path(path)]
    Spool.remove(path)
    Spool.remove(path)  # twice is harmless
    assert Spool.read(path) is None and spool.files() == []


def test_spool_files_no_catalog_row_needs_are_removed_at_start(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        color_down = {**services, "color": down_url()}
        async with opened_writer(tmp_path, pg_dsn, color_down) as (writer, _retries):
            await writer.add(103, picture(103))  # color pending: its spool file is needed
            needed = writer.spool.files()
            # What a kill -9 leaves: an upload spooled before its catalog row, a write cut short.
            orphan = Path(writer.spool.write(104, picture(104)))
            cut_short = writer.spool.folder / "105.0badc0de.tmp"
            cut_short.write_bytes(b"half an upload")
            assert len(writer.spool.files()) == 3

        async with opened_writer(tmp_path, pg_dsn, color_down) as (writer, _retries):
            writer.reconcile_spool()
            assert writer.spool.files() == needed
            assert not orphan.exists() and not cut_short.exists()
            assert (await writer.status([103]))[103]["state"] == "pending"

    asyncio.run(scenario())


def test_a_part_gives_up_visibly_and_catalog_retry_sends_it_again(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    async def scenario() -> None:
        color_down = {**services, "color": down_url()}
        async with opened_writer(tmp_path, pg_dsn, color_down, retry_max_attempts=3) as (writer, retries):
            await writer.add(106, picture(106))  # attempt 1
            for _ in range(2):  # attempts 2 and 3: the last one gives up
                await asyncio.sleep(0.05)
                assert await retries.retry_due() == 1
            await asyncio.sleep(0.05)
            assert await retries.retry_due() == 0, "a part that gave up is not retried any more"
            assert (await writer.status([106]))[106]["state"] == "failed"
            stats = await writer.stats()
            assert stats["failed_parts"] == {"color": 1} and stats["pending_parts"] == {}
            assert stats["spool_files"] == 1, "the upload is kept for `ambience catalog retry`"

        async with opened_writer(tmp_path, pg_dsn, services, retry_max_attempts=3) as (writer, retries):
            assert await retries.retry_now([106]) == 1
            await retry_until_settled(writer, retries)
            assert (await writer.status([106]))[106]["state"] == "complete"
            assert (await writer.stats())["spool_files"] == 0

    asyncio.run(scenario())
    assert stored(services["color"], "color", 106)


def test_pending_parts_are_retried_as_soon_as_the_service_answers_again(
    services: dict[str, str], tmp_path: Path, pg_server: TestServer
) -> None:
    (tmp_path / "own").mkdir()
    own = inprocess_services(tmp_path / "own", pg_server.new_database("writer_watch"), ["color"])
    with own as running:
        color = running["color"]

        async def scenario() -> None:
            urls = {**services, "color": color.url}
            # A backoff of an hour: only the health watch can make the part due now.
            async with opened_writer(
                tmp_path,
                pg_server.new_database("writer_watch_catalog"),
                urls,
                retry_backoff_s=3600,
                retry_backoff_max_s=3600,
            ) as (writer, retries):
                color.stop()
                outcomes = await writer.add(107, picture(107))
                assert outcomes["color"].state == PENDING and writer.down == {"color"}
                assert await retries.watch_down_services() == []  # still down
                assert await retries.retry_due() == 0  # backoff not over
                color.start()
                assert await retries.watch_down_services() == ["color"]
                assert await retries.retry_due() == 1
                assert (await writer.status([107]))[107]["state"] == "complete"

        asyncio.run(scenario())
        assert stored(color.url, "color", 107)


def test_begin_add_run_again_after_an_ambiguous_commit_is_the_same_add(pg_dsn: str) -> None:
    postgres = PostgresComponent(PostgresSettings(dsn=pg_dsn), {COMPONENT: MIGRATIONS}, "test-catalog")
    catalog = Catalog(postgres.open())
    try:
        catalog.begin_add(108, NAMES, "/spool/108.aaaa", "digest-a")
        # The transaction runs again (its COMMIT went through, the reply was lost): not a conflict.
        catalog.begin_add(108, NAMES, "/spool/108.aaaa", "digest-a")
        assert Backlog(postgres).spool_files() == {"/spool/108.aaaa"}
        with pytest.raises(CatalogConflict, match="the same image"):
            catalog.begin_add(108, NAMES, "/spool/108.bbbb", "digest-a")  # another upload of it
        with pytest.raises(CatalogConflict, match=r"already exists$"):
            catalog.begin_add(108, NAMES, "/spool/108.cccc", "digest-b")
        assert Backlog(postgres).status([108])[108]["state"] == "pending"
    finally:
        postgres.close()


def test_a_conflict_is_done_only_when_the_service_holds_the_same_image(
    services: dict[str, str], tmp_path: Path, pg_dsn: str
) -> None:
    def direct_add(service: str, image_id: int, data: bytes) -> None:
        reply = httpx.post(
            f"{services[service]}/calculate_{service}_features",
            files={"image": ("document", data)},
            data={"image_id": str(image_id)},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text

    # As after the README: color got a photo under these ids directly, not through the gateway.
    direct_add("color", 109, picture(900))
    direct_add("color", 110, picture(110))

    async def scenario() -> None:
        async with opened_writer(tmp_path, pg_dsn, services) as (writer, _retries):
            other = await writer.add(109, picture(109))
            assert other["phash"].state == DONE
            assert other["color"].state == FAILED and "another image" in (other["color"].detail or "")
            assert (await writer.status([109]))[109]["state"] == "failed"
            same = await writer.add(110, picture(110))
            assert same["color"] == (DONE, "ok", "already stored")
            assert (await writer.status([110]))[110]["state"] == "complete"

    asyncio.run(scenario())
