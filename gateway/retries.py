"""The retry worker: what the fan-out writer (gateway/writer.py) could not finish, sent again.

Parts whose backoff has run out are sent again (one image at a time per id, images in parallel,
under the writer's per-id locks, so a retry never overtakes the request path); services whose last
answer was a transient failure are watched through their /health, and their pending parts made due
at once when they answer again; ``ambience catalog retry`` sends the parts that gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from starlette.concurrency import run_in_threadpool

from gateway.backlog import Backlog, DuePart
from gateway.catalog import PENDING, PartOp
from gateway.proxy import ServiceClients
from gateway.settings import GatewaySettings
from gateway.writer import FanOutWriter
from services.common.errors import DatabaseUnavailable

log = logging.getLogger("ambience.gateway")


class RetryWorker:
    """The background half of ``writer``: its retries and its watch of the services that were down."""

    def __init__(
        self, settings: GatewaySettings, clients: ServiceClients, backlog: Backlog, writer: FanOutWriter
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.backlog = backlog
        self.writer = writer
        self._worker: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    async def retry_image(self, image_id: int, parts: list[DuePart]) -> None:
        """Send the due parts of one image again, unless the request path finished or changed them
        meanwhile."""
        async with self.writer.locks.hold(image_id):
            ops, spool = [], None
            for part in parts:
                now = await run_in_threadpool(self.backlog.part, image_id, part.service)
                if now is not None and now.status == PENDING and now.op == part.op:
                    ops.append(PartOp(part.service, now.op, now.add_queued))
                    spool = now.spool
            if not ops:
                return
            data = None
            if spool and any(s.op == "add" or s.add_queued for s in ops):
                data = await run_in_threadpool(self.writer.spool.read, spool)
            deleted, added = await self.writer.apply(image_id, ops, data)
            await self.writer.record(image_id, "delete", deleted)
            await self.writer.record(image_id, "add", added)
            for op, outcomes in (("delete", deleted), ("add", added)):
                finished = [s for s, o in outcomes.items() if o.state != PENDING]
                if finished:
                    log.info("retry of %s image %d done for %s", op, image_id, ", ".join(finished))

    async def retry_due(self) -> int:
        """One pass of the retry worker: every part whose backoff has run out (at most
        ``retry_batch``), one image at a time per id, images in parallel. Returns how many parts
        were due; an unreadable catalog counts as none (logged)."""
        try:
            due = await run_in_threadpool(self.backlog.due, self.settings.retry_batch)
        except DatabaseUnavailable as exc:
            log.warning("retry worker: %s", exc)
            return 0
        except Exception:
            log.exception("retry worker: reading the catalog failed")
            return 0
        by_image: dict[int, list[DuePart]] = defaultdict(list)
        for part in due:
            by_image[part.image_id].append(part)
        if by_image:
            results = await asyncio.gather(
                *(self.retry_image(i, parts) for i, parts in by_image.items()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, DatabaseUnavailable):
                    log.error("retry worker: %r", result)
        return len(due)

    async def watch_down_services(self) -> list[str]:
        """Ask each service that last failed transiently for its /health; those that answer get
        their pending parts made due at once (no waiting out a backoff of minutes). Returns them."""
        down = sorted(self.writer.down)
        checks = await asyncio.gather(*(self.clients.health(s) for s in down))
        back = [s for s, check in zip(down, checks, strict=True) if check.ok]
        for service in back:
            self.writer.down.discard(service)
            with contextlib.suppress(DatabaseUnavailable):
                count = await run_in_threadpool(self.backlog.due_now, service)
                log.info("%s answers again: %d pending part(s) retried now", service, count)
        if back:
            self.writer.retries_due.set()
        return back

    async def retry_now(self, image_ids: list[int] | None) -> int:
        """``ambience catalog retry``: parts that gave up are sent again at once."""
        count = await run_in_threadpool(self.backlog.retry_failed, image_ids)
        self.writer.retries_due.set()
        return count

    async def run_retries(self) -> None:
        """The retry worker: passes back to back while a full batch was due, else one per
        ``retry_interval_s`` or as soon as a service that was down answers again."""
        while True:
            if await self.retry_due() < self.settings.retry_batch:
                self.writer.retries_due.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.writer.retries_due.wait(), self.settings.retry_interval_s)

    async def run_health_watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retry_interval_s)
            try:
                await self.watch_down_services()
            except Exception:
                log.exception("health watch")

    def start(self) -> None:
        self._worker = asyncio.create_task(self.run_retries(), name="gateway-retry-worker")
        self._watch = asyncio.create_task(self.run_health_watch(), name="gateway-health-watch")

    async def stop(self) -> None:
        for task in (self._worker, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._worker = self._watch = None
