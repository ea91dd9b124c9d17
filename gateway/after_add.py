"""What follows an add, as declared, ordered steps that background workers finish.

An add answers once the feature services have stored the image. Everything else the gateway does
for a new image (its facts, its thumbnail, its duplicate links, ...) is a step: the catalog records
the image's steps, pending and in their order, in the same transaction as the add itself
(gateway/catalog.py), so a gateway killed at any point loses none of them; workers take the images
whose next step is due (gateway/backlog.py: claimed for a while, so replicas never run a step
twice and a claim left by a killed worker runs out), run the steps of one image in their declared
order and record each outcome. A step that fails is tried again after a backoff (the later steps of
that image wait for it) and gives up after ``RETRY_MAX_ATTEMPTS``; one that can never succeed
(a picture no decoder takes) fails at once and the later steps go on. A step that searches by the
image's stored id (:attr:`AfterAddStep.needs_stored`) waits until every service part of the add is
done, but for a service ``ambience serve`` marked unavailable (gateway/runner_marks.py). The
spool file stays until every step that reads the upload is done.

The order is the list the app declares, never the order of subscriptions: the facts (capture
time, exposure, GPS, size) first, which the duplicate links read; the thumbnail before the copies,
whose crop check aligns thumbnails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.concurrency import run_in_threadpool

from gateway.backlog import Backlog, ClaimedImage
from gateway.catalog import DONE, FAILED, PENDING, Catalog
from gateway.runner_marks import RunnerMarks
from gateway.settings import GatewaySettings
from gateway.step_records import StepDecl
from gateway.steps import AddedImage, AfterAddStep, StepFailed
from gateway.writer import KeyedLocks, Spool
from services.common.errors import DatabaseUnavailable

log = logging.getLogger("ambience.gateway")


class AfterAdd:
    """The declared steps and the workers that run them."""

    def __init__(
        self,
        settings: GatewaySettings,
        steps: list[AfterAddStep],
        catalog: Catalog,
        backlog: Backlog,
        spool: Spool,
        locks: KeyedLocks,
        replica: str,
        marks: RunnerMarks | None = None,
    ) -> None:
        """``marks``: the services the runner marked unavailable, whose pending parts a step that
        needs the stored image does not wait for (gateway/runner_marks.py)."""
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"after-add steps must have distinct names: {names}")
        self.settings = settings
        self.steps = {s.name: s for s in steps}
        self.order = names
        self.catalog = catalog
        self.backlog = backlog
        self.spool = spool
        self.locks = locks
        self.marks = marks
        #: Who claims steps (one name per gateway process and data dir).
        self.replica = replica
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        #: Steps run and how they ended, since start (for /metrics and tests).
        self.ran = {DONE: 0, PENDING: 0, FAILED: 0, "waiting": 0}

    def declared(self) -> list[StepDecl]:
        """What the catalog records with every add, in order."""
        return [StepDecl(s.name, s.uses_upload) for s in self.steps.values()]

    def wake(self) -> None:
        """An add was recorded: the workers look at once instead of at their next interval."""
        self._wake.set()

    async def forget(self, image_id: int) -> None:
        """A delete: every step's keepings of the image go (each step's failure is logged)."""
        for step in self.steps.values():
            try:
                await step.forget(image_id)
            except Exception:
                log.exception("delete of image %d: the %s step could not forget it", image_id, step.name)

    # -- the workers ------------------------------------------------------------------------------

    async def run_due(self, limit: int = 1) -> int:
        """Claim up to ``limit`` images whose next step is due and finish what can be finished of
        each, images in parallel. Returns how many were claimed; an unreadable catalog counts as
        none (logged)."""
        try:
            claimed = await run_in_threadpool(
                self.backlog.claim_steps, limit, self.settings.step_lease_s, self.replica
            )
        except DatabaseUnavailable as exc:
            log.warning("step workers: %s", exc)
            return 0
        results = await asyncio.gather(*(self.finish(image) for image in claimed), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, DatabaseUnavailable):
                log.error("step workers: %r", result)
        return len(claimed)

    async def finish(self, image: ClaimedImage) -> None:
        """Run the claimed steps of one image in their order; stop at the first that must wait or
        be tried again (the later ones are released for a later pass). An image that an add,
        delete or retry is working on right now is left for a later pass, never waited for: a
        claim held while waiting could run out and be taken by another worker."""

        async def record(
            name: str, outcome: str, error: str | None = None, wait: float | None = None
        ) -> None:
            release = await run_in_threadpool(
                self.catalog.record_step, image.image_id, name, outcome, error, wait, image.token
            )
            await run_in_threadpool(self.spool.remove, release)

        if self.locks.busy(image.image_id):
            for name in image.steps:
                await record(name, "waiting", wait=self.settings.retry_interval_s)
            return
        async with self.locks.hold(image.image_id):
            data = None
            if any(self.steps[name].uses_upload for name in image.steps if name in self.steps):
                data = await run_in_threadpool(self.spool.read, image.spool) if image.spool else None
            for n, name in enumerate(image.steps):
                outcome, error = await self._run_one(name, image, data)
                self.ran[outcome] += 1
                await record(
                    name, outcome, error, self.settings.retry_interval_s if outcome == "waiting" else None
                )
                if outcome in ("waiting", PENDING):
                    for later in image.steps[n + 1 :]:
                        await record(later, "released")
                    return

    def _waits_for(self, pending: list[str]) -> bool:
        """Whether a part still pending keeps a step that needs the stored image waiting: one on a
        service the runner marked unavailable does not (it would wait a day of retries)."""
        marked = self.marks.marked() if self.marks is not None else frozenset()
        return any(service not in marked for service in pending)

    async def _run_one(self, name: str, image: ClaimedImage, data: bytes | None) -> tuple[str, str | None]:
        """One step's outcome: done, failed (for good), pending (try again) or waiting."""
        step = self.steps.get(name)
        if step is None:  # recorded by a gateway that declared other steps
            return FAILED, f"no step {name!r} is declared here"
        if step.needs_stored and self._waits_for(image.pending_services):
            return "waiting", None
        if step.uses_upload and data is None:
            return FAILED, "the upload is no longer spooled"
        started = time.perf_counter()
        try:
            upload = data if step.uses_upload else None
            await step.run(AddedImage(image.image_id, upload, image.file_name, image.facts))
        except StepFailed as exc:
            log.warning("image %d: the %s step failed for good: %s", image.image_id, name, exc)
            return FAILED, str(exc)[:500]
        except Exception as exc:
            log.warning("image %d: the %s step will be tried again: %s", image.image_id, name, exc)
            return PENDING, f"{type(exc).__name__}: {exc}"[:500]
        log.debug("image %d: %s done in %.3f s", image.image_id, name, time.perf_counter() - started)
        return DONE, None

    async def run_worker(self) -> None:
        """One worker: an image after another while there is work, else a look every
        ``retry_interval_s`` or as soon as an add is recorded."""
        while True:
            try:
                busy = await self.run_due()
            except Exception:
                log.exception("step workers")
                busy = 0
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.retry_interval_s)

    async def start(self) -> None:
        """Release the claims a previous run of this gateway left (killed while it held them), then
        start the workers."""
        with contextlib.suppress(DatabaseUnavailable):
            await run_in_threadpool(self.backlog.release_claims, self.replica)
        self._workers = [
            asyncio.create_task(self.run_worker(), name=f"gateway-step-worker-{n}")
            for n in range(self.settings.step_workers)
        ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
