"""The gateway's fan-out writer: an add or a delete sent to every feature service and recorded in the
catalog; what failed is retried in the background until done (gateway/retries.py).

- :class:`Spool` keeps an upload's bytes on disk until every service has them (a retry reads them
  back, across gateway restarts too);
- :func:`add_outcome` / :func:`delete_outcome` classify one service's answer: done, pending (a
  transient failure: sent again later, with a backoff and a give-up point), failed (a permanent
  server error: not retried until ``ambience catalog retry``) or rejected (the service refused the
  input with a 4xx: retrying cannot help);
- :class:`FanOutWriter` does the request-path add and delete, and the fan-out the retry worker
  (gateway/retries.py) sends again. All work on one image id is serialised (:class:`KeyedLocks`),
  so the retry of an add can never overtake the delete that followed it; per service, an add of an
  id whose delete is still pending there waits behind that delete (the catalog queues it on the
  part), while the services that confirmed the delete get the add at once.

No HTTP server here: the routes (gateway/routes/writes.py) translate :class:`ImageRejected` and
:class:`~gateway.catalog.CatalogConflict` into status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from starlette.concurrency import run_in_threadpool

from gateway.backlog import Backlog
from gateway.catalog import DONE, FAILED, PENDING, REJECTED, Catalog, PartOp
from gateway.proxy import CallResult, ServiceClients
from gateway.runner_marks import RunnerMarks
from gateway.settings import UPSTREAMS, GatewaySettings
from gateway.step_records import StepDecl
from services.common.errors import DatabaseUnavailable

log = logging.getLogger("ambience.gateway")


class KeyedLocks:
    """One asyncio lock per image id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._locks.pop(key, None)

    def __len__(self) -> int:
        """Ids with a lock held or awaited."""
        return len(self._locks)

    def busy(self, key: int) -> bool:
        """Whether ``key``'s lock is held or awaited (a worker then leaves the id for later)."""
        return key in self._locks


class Spool:
    """Uploaded bytes kept on disk until every service has them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, image_id: int, data: bytes) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{image_id}.{uuid.uuid4().hex[:8]}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        return str(path)

    @staticmethod
    def read(path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    @staticmethod
    def remove(path: str | None) -> None:
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*")) if self.folder.is_dir() else []

    def reconcile(self, needed: set[str]) -> list[Path]:
        """Remove every file no catalog row needs: ``*.tmp`` left by a write that was cut short, and
        uploads spooled by a gateway killed before (or while) their catalog row was written. The
        gateway owns its spool folder alone, and calls this before it accepts requests. Returns
        what was removed."""
        needed_names = {Path(p).name for p in needed}  # by name: the data dir may be given relatively
        removed = []
        for path in self.files():
            if path.suffix == ".tmp" or path.name not in needed_names:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                removed.append(path)
        return removed


class PartOutcome(NamedTuple):
    """One service's part of an add or delete: what the catalog records and what the client sees."""

    state: str  # catalog: done | pending | rejected
    status: str  # reply: ok | failed | unavailable
    detail: str | None


Outcomes = dict[str, PartOutcome]


#: Server answers that say "not now": the service is starting, overloaded, or behind a proxy that
#: lost it. Any other 5xx (501, 505, ...) says the request itself cannot be served: not retried.
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504, 507})


def transient(result: CallResult) -> bool:
    """No answer at all (not listening, timeout, dropped) or a "not now" status."""
    return result.status_code is None or result.status_code in TRANSIENT_STATUS


def add_outcome(result: CallResult, digest: str = "") -> PartOutcome:
    """A service's answer to an add: stored (or already stored), refused for good, or to retry.

    A 409 is done only when the service holds this very file (it names the SHA-256 of what it
    holds: ``digest``); another image under the id is a failed part, never "already stored". A
    service that cannot tell (no digest recorded) is trusted, as before digests were kept."""
    if result.ok:
        return PartOutcome(DONE, "ok", None)
    if result.status_code == 409:
        held = re.search(r"sha256 ([0-9a-f]{64})", result.detail or "")
        if digest and held and held.group(1) != digest:
            return PartOutcome(FAILED, "failed", f"{result.service} holds another image under this id")
        return PartOutcome(DONE, "ok", "already stored")
    if transient(result):  # 429 included: "not now" is no verdict on the image
        return PartOutcome(PENDING, result.outcome, result.detail)
    if result.status_code is not None and 400 <= result.status_code < 500:
        return PartOutcome(REJECTED, "failed", result.detail)
    return PartOutcome(FAILED, result.outcome, result.detail)


def delete_outcome(result: CallResult) -> PartOutcome:
    """A service's answer to a delete: a 4xx (e.g. not stored) ends the part as surely as a 200,
    but a 429 (too many requests: nothing was deleted) is sent again, as a 503 is."""
    if transient(result):
        return PartOutcome(PENDING, result.outcome, result.detail)
    if result.ok or (result.status_code is not None and 400 <= result.status_code < 500):
        return PartOutcome(DONE, "ok" if result.ok else "failed", result.detail)
    return PartOutcome(FAILED, result.outcome, result.detail)


def reply_entries(outcomes: Outcomes) -> list[dict[str, Any]]:
    """The client's view of a fan-out: one entry per service."""
    return [
        {"service": s, "status": o.status, **({"detail": o.detail} if o.detail else {})}
        for s, o in outcomes.items()
    ]


GAVE_UP_BEFORE_ADD = (
    "an earlier delete of this id gave up here; `ambience catalog retry` sends it, then this add"
)


class ImageRejected(Exception):
    """Every feature service refused the upload: nothing is stored, nothing will be retried."""

    def __init__(self, outcomes: Outcomes) -> None:
        first = next(iter(outcomes.values())).detail or "rejected"
        super().__init__(f"no service accepted the image: {first}")
        self.details = {s: o.detail for s, o in outcomes.items()}
        #: 413 when the services found the image too large, 422 for any other refusal.
        self.status_code = 413 if "413" in first else 422


class FollowUp(Protocol):
    """What follows the writes (gateway/after_add.py): the steps recorded with every add, the
    workers told when one is recorded, and a deleted image forgotten."""

    def declared(self) -> list[StepDecl]: ...

    def wake(self) -> None: ...

    async def forget(self, image_id: int) -> None: ...


class NoFollowUp:
    """Nothing follows the writes (a writer driven on its own)."""

    def declared(self) -> list[StepDecl]:
        return []

    def wake(self) -> None:
        pass

    async def forget(self, image_id: int) -> None:
        pass


class FanOutWriter:
    """Adds and deletes across the feature services ``services``, with the catalog as the record of
    what each one holds (the retry worker, gateway/retries.py, finishes what failed).

    The catalog's database may not answer (not open yet, or gone): every operation then raises
    :class:`DatabaseUnavailable` (HTTP 503).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        spool: Spool,
        services: list[str],
        catalog: Catalog,
        backlog: Backlog,
        follow_up: FollowUp | None = None,
        locks: KeyedLocks | None = None,
        marks: RunnerMarks | None = None,
    ) -> None:
        """``locks``: the per-id locks, shared with whatever else works on one image (the steps
        that follow an add)."""
        self.settings = settings
        self.clients = clients
        self.spool = spool
        self.services = services
        self.catalog = catalog
        self.backlog = backlog
        self.follow_up = follow_up or NoFollowUp()
        self.locks = locks or KeyedLocks()
        #: Services the runner could not start for a lasting reason: adds leave them out.
        self.marks = marks
        #: The services an add does not wait for (sent by the retry worker at once); none when every
        #: service would be (an add must hear from at least one whether the image is one).
        deferred = frozenset(settings.deferred_services) & frozenset(services)
        self.deferred = deferred if deferred != frozenset(services) else frozenset()
        #: Services whose last answer was a transient failure: the retry worker (gateway/retries.py)
        #: watches them and retries their parts at once when they answer again.
        self.down: set[str] = set()
        #: Set when parts are due now (a deferred service's add): the retry worker looks at once.
        self.retries_due = asyncio.Event()

    def reconcile_spool(self) -> None:
        """Start-up: the spool holds exactly the uploads the catalog still needs (blocking; call it
        before requests are served)."""
        removed = self.spool.reconcile(self.backlog.spool_files())
        if removed:
            log.info("spool: removed %d file(s) no catalog row needs (left by an earlier stop)", len(removed))

    # Catalog calls and spool file work (reads of up to 50 MB, fsync, unlink, listing) run in worker
    # threads, never on the event loop.

    # -- the request path ---------------------------------------------------------------------

    def add_targets(self) -> list[str]:
        """The services an add goes to: every store service but those the runner marked unavailable
        (gateway/runner_marks.py), unless that leaves none."""
        marked = self.marks.marked() if self.marks is not None else frozenset()
        return [s for s in self.services if s not in marked] or list(self.services)

    async def add(
        self,
        image_id: int,
        data: bytes,
        file_name: str | None = None,
        source: bytes | None = None,
        facts: dict[str, Any] | None = None,
    ) -> Outcomes:
        """Spool the upload, record the add, send it to every feature service. On a service where a
        delete of the id is still pending, the delete is sent first and the add follows once it is
        confirmed (now or by the retry worker). Raises :class:`~gateway.catalog.CatalogConflict`
        when the id is taken, and :class:`ImageRejected` when every service it reached refused the
        image. ``source``: the upload ``data`` was made from (a still of a video, HEIC or AVIF:
        gateway/media.py), whose digest the catalog records; ``facts``: what its header says (JSON),
        recorded with the add for the steps that follow it."""
        catalog = self.catalog
        services = self.add_targets()
        async with self.locks.hold(image_id):
            path = await run_in_threadpool(self.spool.write, image_id, data)
            # the upload's own digest (what `ambience index` compares with the file); the services'
            # 409s name the digest of what they got, which apply() computes from ``data``
            digest = hashlib.sha256(source if source is not None else data).hexdigest()
            try:
                ops = await run_in_threadpool(
                    catalog.begin_add,
                    image_id,
                    services,
                    path,
                    digest,
                    self.follow_up.declared(),
                    file_name,
                    facts,
                    self.deferred,
                )
            except DatabaseUnavailable as exc:
                # A break during COMMIT may have committed the row all the same: the spool file
                # stays for it (the start-up reconciliation drops it if not).
                if not exc.maybe_committed:
                    await run_in_threadpool(self.spool.remove, path)
                raise
            except BaseException:
                await run_in_threadpool(self.spool.remove, path)
                raise
            deleted, added = await self.apply(image_id, ops, data)
            await self.record(image_id, "delete", deleted)
            if added and all(o.state == REJECTED for o in added.values()):
                await run_in_threadpool(self.catalog.forget, image_id)
                await run_in_threadpool(self.spool.remove, path)
                raise ImageRejected(added)
            await self.record(image_id, "add", added)
        self.follow_up.wake()
        # A service whose delete is still pending answers for the add with the delete's outcome; one
        # whose delete gave up (no step now) is named too: the add waits there for a retry.
        waiting = PartOutcome(FAILED, "failed", GAVE_UP_BEFORE_ADD)
        queued = PartOutcome(PENDING, "queued", None)  # a deferred service: sent in the background
        if self.deferred:
            self.retries_due.set()
        return {
            name: added.get(name) or deleted.get(name) or (queued if name in self.deferred else waiting)
            for name in services
        }

    async def delete(self, image_id: int) -> Outcomes:
        """Delete from every service that may hold the image. A pending add of the same id is
        cancelled first (its spool file removed), so a retry never brings the image back."""
        async with self.locks.hold(image_id):
            old_spool, names = await run_in_threadpool(self.catalog.begin_delete, image_id, self.services)
            await run_in_threadpool(self.spool.remove, old_spool)
            deleted, _ = await self.apply(image_id, [PartOp(name, "delete") for name in names], None)
            await self.record(image_id, "delete", deleted)
            await self.follow_up.forget(image_id)
        return deleted

    async def status(self, image_ids: list[int]) -> dict[int, dict[str, Any]]:
        return await run_in_threadpool(self.backlog.status, image_ids)

    async def stats(self) -> dict[str, Any]:
        """The catalog's counts and the number of uploads still spooled."""
        counts = await run_in_threadpool(self.backlog.counts)
        counts["spool_files"] = len(await run_in_threadpool(self.spool.files))
        return counts

    # -- fan-outs -----------------------------------------------------------------------------

    async def apply(self, image_id: int, ops: list[PartOp], data: bytes | None) -> tuple[Outcomes, Outcomes]:
        """Send each step to its service, services in parallel; on one service a delete with an add
        queued behind it is followed by the add once the delete is confirmed. ``data``: the image's
        current upload (None when it is missing: an add then fails for good). Returns the
        (delete, add) outcomes, for the caller to record in that order."""
        digest = hashlib.sha256(data).hexdigest() if data is not None else ""
        missing = PartOutcome(REJECTED, "failed", "the spooled upload is missing")

        async def one(step: PartOp) -> tuple[PartOutcome | None, PartOutcome | None]:
            deleted = None
            if step.op == "delete":
                body = {"image_id": image_id}
                store = UPSTREAMS[step.service].store
                deleted = delete_outcome(await self.clients.call(step.service, f"/delete_{store}", json=body))
                if not (step.add_queued and deleted.state == DONE):
                    return deleted, None
            if data is None:
                return deleted, missing
            fields = {"image_id": str(image_id)}
            path = f"/calculate_{UPSTREAMS[step.service].store}"
            result = await self.clients.send_image(step.service, path, data, fields)
            return deleted, add_outcome(result, digest)

        results = await asyncio.gather(*(one(op) for op in ops))
        deletes = {s.service: d for s, (d, _) in zip(ops, results, strict=True) if d is not None}
        adds = {s.service: a for s, (_, a) in zip(ops, results, strict=True) if a is not None}
        return deletes, adds

    async def record(self, image_id: int, op: str, outcomes: Outcomes) -> None:
        """Write the outcomes to the catalog; the spool file goes once the add is complete. An add
        is recorded even with no outcomes (only deferred services): that makes its steps due."""
        if not outcomes and op != "add":
            return
        for service, outcome in outcomes.items():
            if outcome.state == PENDING:
                self.down.add(service)
            elif outcome.state == DONE:
                self.down.discard(service)
        done = await run_in_threadpool(
            self.catalog.record, image_id, op, {s: (o.state, o.detail) for s, o in outcomes.items()}
        )
        await run_in_threadpool(self.spool.remove, done)
