"""The steps that follow an add (gateway/after_add.py) over a real PostgreSQL catalog: recorded with
the add, run in their declared order by workers, retried, waiting for the services, claimed so that
two gateways never run one twice, taken back after a crash, dropped with a delete. The steps here
record what they are given; the gateway's own steps (facts, thumbnail, links) are exercised over
HTTP in tests/gateway/test_steps_http.py."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.after_add import AfterAdd
from gateway.backlog import Backlog
from gateway.catalog import DONE, PENDING, Catalog
from gateway.runner_marks import RunnerMarks
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.steps import AddedImage, StepFailed
from gateway.writer import KeyedLocks, Spool
from services.common.postgres.database import PostgresComponent, PostgresSettings


@dataclass
class Recorder:
    """A step that records what it was given; ``fail`` times it raises first (or StepFailed)."""

    name: str
    log: list[tuple[str, int, bytes | None]]
    uses_upload: bool = False
    needs_stored: bool = False
    fail: int = 0
    for_good: bool = False
    forgotten: list[int] = field(default_factory=list)

    async def run(self, image: AddedImage) -> None:
        if self.fail:
            self.fail -= 1
            raise (StepFailed if self.for_good else RuntimeError)(f"{self.name} not now")
        self.log.append((self.name, image.image_id, image.data))

    async def forget(self, image_id: int) -> None:
        self.forgotten.append(image_id)


@dataclass
class Gateway:
    """What one gateway holds of the steps: its ledger, backlog, spool and workers."""

    catalog: Catalog
    backlog: Backlog
    spool: Spool
    after_add: AfterAdd


def gateway(
    tmp_path: Path,
    dsn: str,
    steps: list[Recorder],
    name: str = "a",
    marks: RunnerMarks | None = None,
    known: bool = False,
) -> tuple[Gateway, PostgresComponent]:
    """``known``: the catalog records this gateway with its adds (as the app's does), whose steps
    then go to it first; else any gateway takes them at once (what the race tests need)."""
    settings = GatewaySettings(
        data_dir=tmp_path / name, retry_backoff_s=0.05, retry_backoff_max_s=0.05, step_lease_s=30
    )
    postgres = PostgresComponent(PostgresSettings(dsn=dsn), {COMPONENT: MIGRATIONS}, f"test-steps-{name}")
    postgres.open()
    catalog = Catalog(postgres, 0.05, 0.05, max_attempts=3, replica=f"test:{name}" if known else "")
    backlog, spool = Backlog(postgres), Spool(tmp_path / name / "spool")
    after_add = AfterAdd(
        settings,
        steps,  # type: ignore[arg-type]
        catalog,
        backlog,
        spool,
        KeyedLocks(),
        replica=f"test:{name}",
        marks=marks,
    )
    return Gateway(catalog, backlog, spool, after_add), postgres


def add(gw: Gateway, image_id: int, data: bytes, parts_done: bool = True) -> str:
    """Record an add as the writer does (spooled upload, parts, steps, then the services' answers,
    which make the steps due): phash stored it, or was down."""
    path = gw.spool.write(image_id, data)
    gw.catalog.begin_add(image_id, ["phash"], path, "", gw.after_add.declared(), f"{image_id}.jpg")
    gw.catalog.record(image_id, "add", {"phash": (DONE, None) if parts_done else (PENDING, "down")})
    return path


async def drain(gw: Gateway, passes: int = 50) -> None:
    """Worker passes until nothing is due (steps retried after their 50 ms backoff included)."""
    for _ in range(passes):
        if not await gw.after_add.run_due(limit=4):
            state = await asyncio.to_thread(gw.backlog.counts)
            if not state["pending_steps"]:
                return
            await asyncio.sleep(0.06)


def test_steps_run_in_their_order_with_the_upload_and_the_spool_goes_after(
    tmp_path: Path, pg_dsn: str
) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    steps = [Recorder("facts", log, uses_upload=True), Recorder("links", log, needs_stored=True)]
    gw, postgres = gateway(tmp_path, pg_dsn, steps)
    try:
        path = add(gw, 7, b"picture")
        assert Path(path).exists()  # a step still reads the upload
        status = gw.backlog.status([7])[7]
        assert status["state"] == "finishing"
        assert list(status["steps"]) == ["facts", "links"]
        assert gw.backlog.counts()["pending_steps"] == {"facts": 1, "links": 1}
        asyncio.run(drain(gw))
        assert log == [("facts", 7, b"picture"), ("links", 7, None)]  # in order; the upload only where used
        assert gw.backlog.status([7])[7]["state"] == "complete"
        assert not Path(path).exists() and gw.spool.files() == []
        assert gw.backlog.counts()["pending_steps"] == {}
    finally:
        postgres.close()


def test_a_failing_step_is_retried_and_holds_the_later_ones_a_hopeless_one_does_not(
    tmp_path: Path, pg_dsn: str
) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    flaky = Recorder("thumbnail", log, fail=1)
    steps = [flaky, Recorder("links", log)]
    gw, postgres = gateway(tmp_path, pg_dsn, steps)
    try:
        add(gw, 1, b"a")
        asyncio.run(gw.after_add.run_due())
        assert log == []  # links waited for the thumbnail's retry
        status = gw.backlog.status([1])[1]["steps"]
        assert status["thumbnail"]["attempts"] == 1 and "not now" in status["thumbnail"]["error"]
        asyncio.run(drain(gw))
        assert log == [("thumbnail", 1, None), ("links", 1, None)]

        log.clear()
        flaky.fail, flaky.for_good = 1, True  # e.g. a file no decoder takes
        add(gw, 2, b"b")
        asyncio.run(drain(gw))
        assert log == [("links", 2, None)]
        entry = gw.backlog.status([2])[2]
        assert entry["steps"]["thumbnail"]["status"] == "failed" and entry["state"] == "complete"
        assert gw.backlog.counts()["failed_steps"] == {"thumbnail": 1}
        assert gw.backlog.retry_failed([2]) == 1  # `ambience catalog retry` sends it again
        asyncio.run(drain(gw))
        assert log == [("links", 2, None), ("thumbnail", 2, None)]
    finally:
        postgres.close()


def test_a_step_that_searches_by_stored_id_waits_for_the_services(tmp_path: Path, pg_dsn: str) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    gw, postgres = gateway(
        tmp_path, pg_dsn, [Recorder("facts", log), Recorder("links", log, needs_stored=True)]
    )
    try:
        add(gw, 3, b"c", parts_done=False)  # phash has not stored it yet (down)
        asyncio.run(gw.after_add.run_due())
        assert log == [("facts", 3, None)]
        assert gw.backlog.status([3])[3]["steps"]["links"]["attempts"] == 0  # waiting is no attempt
        gw.catalog.record(3, "add", {"phash": (DONE, None)})  # the retry worker got it through
        asyncio.run(drain(gw))
        assert log == [("facts", 3, None), ("links", 3, None)]
    finally:
        postgres.close()


def test_a_part_pending_on_a_service_the_runner_marked_unavailable_keeps_no_step_waiting(
    tmp_path: Path, pg_dsn: str
) -> None:
    """image_text without weights (``ambience serve`` wrote why): its pending part would keep the
    links waiting a day of retries; phash down for a moment still keeps them waiting."""
    log: list[tuple[str, int, bytes | None]] = []
    marks = RunnerMarks(tmp_path / "run", ttl_s=0)
    (tmp_path / "run").mkdir()
    gw, postgres = gateway(tmp_path, pg_dsn, [Recorder("links", log, needs_stored=True)], marks=marks)
    try:
        for image_id in (4, 5):
            path = gw.spool.write(image_id, b"d")
            services = ["phash", "image_text"]
            gw.catalog.begin_add(image_id, services, path, "", gw.after_add.declared(), f"{image_id}.jpg")
        gw.catalog.record(4, "add", {"phash": (DONE, None), "image_text": (PENDING, "down")})
        gw.catalog.record(5, "add", {"phash": (PENDING, "down"), "image_text": (PENDING, "down")})
        asyncio.run(gw.after_add.run_due())
        assert log == []  # not marked yet: both wait
        (tmp_path / "run" / "image_text.unavailable").write_text("model weights missing")
        assert marks.reason("image_text") == "model weights missing"
        # the waiting steps' next look, now rather than after retry_interval_s
        postgres.run(lambda cur: cur.execute("UPDATE gateway_steps SET next_try = now()"))
        asyncio.run(gw.after_add.run_due())
        assert log == [("links", 4, None)]  # 5 still waits for phash
    finally:
        postgres.close()


def test_two_gateways_never_run_a_step_twice_and_a_crash_leaves_nothing_undone(
    tmp_path: Path, pg_dsn: str
) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    steps = [Recorder("facts", log), Recorder("thumbnail", log), Recorder("links", log)]
    a, pa = gateway(tmp_path, pg_dsn, steps, "a")
    b, pb = gateway(tmp_path, pg_dsn, steps, "b")
    try:
        for image_id in range(20):
            add(a, image_id, b"x")

        async def both() -> None:
            await asyncio.gather(drain(a), drain(b))

        asyncio.run(both())
        assert sorted(log) == sorted((s, i, None) for i in range(20) for s in ("facts", "thumbnail", "links"))
        for image_id in range(20):  # each image's steps in order, whichever gateway ran them
            mine = [s for s, i, _ in log if i == image_id]
            assert mine == ["facts", "thumbnail", "links"]

        # a gateway killed while it held an image's steps: its claim keeps the others off them ...
        log.clear()
        add(a, 50, b"y")
        claimed = a.backlog.claim_steps(1, 30, "test:a")
        assert [c.steps for c in claimed] == [["facts", "thumbnail", "links"]]
        assert b.backlog.claim_steps(1, 30, "test:b") == []
        # ... until it starts again and takes them back at once
        assert a.backlog.release_claims("test:a") == 3
        asyncio.run(drain(b))
        assert [s for s, i, _ in log if i == 50] == ["facts", "thumbnail", "links"]
    finally:
        pa.close()
        pb.close()


def test_workers_claiming_at_once_never_take_a_later_step_without_the_first(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Four gateways claim and give back the same images as fast as they can: every claim starts
    with the image's first step. A claim that locked the image row by row while scanning its steps
    skipped the first step while another worker held the image for a moment, then took the next
    (seen in CI as thumbnail and links run before facts)."""
    steps = [Recorder("facts", []), Recorder("thumbnail", []), Recorder("links", [])]
    gateways = [gateway(tmp_path, pg_dsn, steps, name) for name in "abcd"]  # type: ignore[arg-type]
    claims: list[tuple[int, list[str]]] = []
    try:
        for image_id in range(40):
            add(gateways[0][0], image_id, b"x")
        until = time.monotonic() + 4

        def claim_and_give_back(gw: Gateway, replica: str) -> None:
            while time.monotonic() < until:
                for claimed in gw.backlog.claim_steps(1, 30, replica):
                    claims.append((claimed.image_id, claimed.steps))
                    for step in claimed.steps:  # one at a time: the next claim may take a prefix
                        gw.catalog.record_step(claimed.image_id, step, "released", token=claimed.token)

        with ThreadPoolExecutor(4) as pool:
            for done in [pool.submit(claim_and_give_back, gw, f"w{n}") for n, (gw, _) in enumerate(gateways)]:
                done.result()
        assert len(claims) > 200  # they did claim, many times over
        assert [c for c in claims if c[1][0] != "facts"] == []
    finally:
        for _, postgres in gateways:
            postgres.close()


def test_the_steps_of_an_add_go_to_its_gateway_and_to_another_once_it_is_gone(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A replica holds its uploads in its own spool and links with its own settings: another takes
    the steps of its adds only once they have been due for a lease without it."""
    log: list[tuple[str, int, bytes | None]] = []
    steps = [Recorder("facts", log, uses_upload=True), Recorder("links", log)]
    a, pa = gateway(tmp_path, pg_dsn, steps, "a", known=True)
    b, pb = gateway(tmp_path, pg_dsn, steps, "b", known=True)
    try:
        add(a, 1, b"through a")
        add(b, 2, b"through b")
        assert [c.image_id for c in b.backlog.claim_steps(4, 30, "test:b")] == [2]
        (claimed,) = a.backlog.claim_steps(4, 30, "test:a")
        assert claimed.image_id == 1 and claimed.steps == ["facts", "links"]
        assert a.backlog.release_claims("test:a") == 2 and b.backlog.release_claims("test:b") == 2

        # a is gone: b takes its image once the steps have been due for b's lease (2 s), not before
        (own,) = b.backlog.claim_steps(4, 2.0, "test:b")
        assert own.image_id == 2
        asyncio.run(b.after_add.finish(own))
        time.sleep(2.1)
        (taken,) = b.backlog.claim_steps(4, 2.0, "test:b")
        assert taken.image_id == 1 and taken.steps == ["facts", "links"]
        log.clear()
        asyncio.run(b.after_add.finish(taken))
        assert log == [("facts", 1, b"through a"), ("links", 1, None)]  # a's spool on this machine
    finally:
        pa.close()
        pb.close()


def test_workers_claiming_at_once_never_take_the_same_step(tmp_path: Path, pg_dsn: str) -> None:
    """Two workers asking for one image at a time, as fast as they can: a worker's SELECT may see a
    step as unclaimed that the other claimed in the meantime; every step is still taken once."""
    log: list[tuple[str, int, bytes | None]] = []
    steps = [Recorder("facts", log), Recorder("links", log)]
    a, pa = gateway(tmp_path, pg_dsn, steps, "a")
    b, pb = gateway(tmp_path, pg_dsn, steps, "b")
    try:
        for image_id in range(60):
            add(a, image_id, b"x")
        taken: dict[str, list[tuple[int, str]]] = {"a": [], "b": []}

        def claim_all(worker: Gateway, name: str) -> None:
            # an empty answer may only mean that the other worker held the rows for a moment
            deadline = time.monotonic() + 30
            while len(taken["a"]) + len(taken["b"]) < 120 and time.monotonic() < deadline:
                claimed = worker.backlog.claim_steps(1, 300, f"test:{name}")
                taken[name] += [(c.image_id, step) for c in claimed for step in c.steps]

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(claim_all, [a, b], ["a", "b"]))
        both = taken["a"] + taken["b"]
        assert sorted(both) == sorted((i, s) for i in range(60) for s in ("facts", "links"))
    finally:
        pa.close()
        pb.close()


def test_a_claim_that_ran_out_records_nothing_and_an_add_in_flight_is_not_raced(
    tmp_path: Path, pg_dsn: str
) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    steps = [Recorder("facts", log, uses_upload=True), Recorder("links", log)]
    a, pa = gateway(tmp_path, pg_dsn, steps, "a")
    b, pb = gateway(tmp_path, pg_dsn, steps, "b")
    try:
        # an add whose request has not sent the services the image yet: its steps are not due
        path = a.spool.write(60, b"w")
        a.catalog.begin_add(60, ["phash"], path, "", a.after_add.declared(), "60.jpg")
        assert a.backlog.claim_steps(4, 30, "test:a") == []
        a.catalog.record(60, "add", {"phash": (DONE, None)})  # sent: the steps are due now

        # a worker whose claim ran out (it waited too long) while another took the steps over
        (late,) = a.backlog.claim_steps(1, 0.01, "test:a")
        time.sleep(0.05)
        (taker,) = b.backlog.claim_steps(1, 30, "test:b")
        assert taker.steps == late.steps == ["facts", "links"] and taker.token != late.token
        assert a.catalog.record_step(60, "facts", DONE, token=late.token) is None
        assert a.catalog.record_step(60, "links", DONE, token=late.token) is None
        assert b.backlog.status([60])[60]["steps"]["facts"]["status"] == "pending"  # untouched
        assert Path(path).exists()  # the new holder still reads the upload
        asyncio.run(b.after_add.finish(taker))
        assert log == [("facts", 60, b"w"), ("links", 60, None)] and not Path(path).exists()

        # an image whose add (or retry) holds its lock is left for a later pass, not waited for
        log.clear()
        add(a, 61, b"v")
        (claimed,) = a.backlog.claim_steps(1, 30, "test:a")

        async def while_held() -> None:
            async with a.after_add.locks.hold(61):
                await a.after_add.finish(claimed)

        asyncio.run(while_held())
        assert log == [] and a.backlog.status([61])[61]["steps"]["facts"]["attempts"] == 0
    finally:
        pa.close()
        pb.close()


def test_a_delete_drops_the_steps_left_and_every_step_forgets_the_image(tmp_path: Path, pg_dsn: str) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    steps = [Recorder("facts", log, uses_upload=True), Recorder("links", log)]
    gw, postgres = gateway(tmp_path, pg_dsn, steps)
    try:
        path = add(gw, 9, b"z")
        old_spool, _ = gw.catalog.begin_delete(9, ["phash"])
        assert old_spool == path
        asyncio.run(gw.after_add.forget(9))
        assert [s.forgotten for s in steps] == [[9], [9]]
        assert gw.backlog.counts()["pending_steps"] == {}
        asyncio.run(drain(gw))
        assert log == []
    finally:
        postgres.close()


def test_steps_must_have_distinct_names(tmp_path: Path, pg_dsn: str) -> None:
    log: list[tuple[str, int, bytes | None]] = []
    with pytest.raises(ValueError, match="distinct names"):
        gateway(tmp_path, pg_dsn, [Recorder("facts", log), Recorder("facts", log)])
