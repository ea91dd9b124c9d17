"""``POST /duplicate_groups/rebuild``: every link of a kind recomputed from the services (after a bulk
import), by :class:`Rebuilder`. ``copies``: the pairs within ``DUPLICATE_DISTANCE`` over the stored
hashes and their mirrors, the crops local features verifies among every stored image, the
thumbnail alignment of every image with a preview, and the links recorded at add time, all checked
again; ``similar``: the embedding source's pairs within ``SIMILAR_DISTANCE`` and the time gap;
``bursts``: the stacks among the catalog's photos (gateway/duplicates/bursts.py), after measuring the
sharpness of the images that have a thumbnail and none yet (in the background when there are any).

A crop is 158-342 phash bits from its source, as far as different photos, so the stored hashes
cannot show it; local_features can. An image added through the gateway was searched at add time,
but ``ambience import`` writes the services' stores directly: after it, only a search per stored
image finds the crops. That is one verified search per image (0.3-1.5 s on two busy cores), minutes
for a collection, so :class:`RebuildJob` runs it as a task whose progress a request reads, and
:class:`CropSearch` makes the searches, a few at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.bursts import BurstLinks
from gateway.duplicates.crops import AlignedCrops
from gateway.duplicates.groups import Link, union_of_links
from gateway.duplicates.links import LinkStore
from gateway.duplicates.policy import LinkPolicy
from gateway.duplicates.sharpness import SharpnessStore
from gateway.image_facts import ImageFacts
from gateway.proxy import ServiceClients
from gateway.settings import UPSTREAMS, GatewaySettings
from gateway.sources import AnalysisSources, Running, SourceUnavailable

log = logging.getLogger("ambience.gateway")

#: Ids asked per /stored_ids page.
IDS_PER_PAGE = 10_000
#: Failed searches in a row after which the rest are not tried (the service is down or overloaded:
#: every further call would wait out its timeout).
FAILURES_IN_A_ROW = 3
#: Seconds between progress lines in the log.
LOG_EVERY_S = 10.0
#: Seconds between asks of a service still computing the pairs of a background rebuild.
PAIRS_POLL_S = 2.0


@dataclass
class Progress:
    #: pairs (the phash service's pairs), crops (local-feature searches), alignment (thumbnails of
    #: colour neighbours), colours (the colour check), sharpness (bursts: thumbnails measured),
    #: stacks (bursts: the catalog's photos paired), saving (the catalog)
    phase: str = "pairs"
    done: int = 0
    total: int = 0
    failed: int = 0


class RebuildJob:
    """One rebuild of ``kind``'s links and its progress; :meth:`start` runs ``work`` as a background
    task."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.progress = Progress()
        self.task: asyncio.Task[dict[str, Any]] | None = None

    def start(self, work: Callable[[RebuildJob], Awaitable[dict[str, Any]]]) -> None:
        self.task = asyncio.create_task(work(self), name=f"rebuild-{self.kind}")
        self.task.add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Task[dict[str, Any]]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("duplicate groups: rebuilding %s failed: %s", self.kind, task.exception())

    @property
    def finished(self) -> bool:
        return self.task is not None and self.task.done()

    def running(self) -> dict[str, Any]:
        """The 202 body while the job runs."""
        return {"status": "running", "kind": self.kind, "progress": asdict(self.progress)}


@dataclass
class CropLinks:
    """What the crop searches found: ``links`` (smaller id first, distance 0: a verified crop has no
    phash distance) and how far they got."""

    links: list[tuple[int, int, float]] = field(default_factory=list)
    images: int = 0
    searched: int = 0
    failed: int = 0
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "complete": self.failed == 0 and self.error is None,
            "images": self.images,
            "searched": self.searched,
            "failed": self.failed,
            "links": len(self.links),
            "error": self.error,
        }


class CropSearch:
    """Every image local_features stores, searched by id for the stored images it verifies with at
    least ``min_inliers`` inliers; ``concurrency`` searches at a time."""

    def __init__(self, clients: ServiceClients, min_inliers: int, concurrency: int) -> None:
        self.clients = clients
        self.min_inliers = min_inliers
        self.concurrency = concurrency
        self.service = UPSTREAMS["local_features"]

    async def stored_ids(self) -> list[int]:
        """Every id the service stores (ValueError naming why when it cannot say)."""
        ids: list[int] = []
        after: int | None = None
        while True:
            result = await self.clients.call(
                self.service.name, "/stored_ids", json={"after": after, "limit": IDS_PER_PAGE}
            )
            if not result.ok:
                raise ValueError(f"{self.service.name} could not list its images: {result.detail}")
            page: list[int] = result.body["image_ids"]
            ids += page
            if len(page) < IDS_PER_PAGE:
                return ids
            after = page[-1]

    async def links(self, progress: Progress) -> CropLinks:
        """Search every stored image; a search that fails is counted in ``failed``, and after
        :data:`FAILURES_IN_A_ROW` of them, or as soon as the service is unreachable, the rest are
        counted there too without being tried."""
        found = CropLinks()
        progress.phase = "crops"
        try:
            ids = await self.stored_ids()
        except ValueError as exc:
            found.error = str(exc)
            log.warning("duplicate groups: no crop search: %s", exc)
            return found
        found.images = progress.total = len(ids)
        pairs: set[tuple[int, int]] = set()
        pending = iter(ids)
        in_a_row = 0
        last_log = time.monotonic()
        log.info("duplicate groups: searching %d images for crops, %d at a time", len(ids), self.concurrency)

        async def worker() -> None:
            nonlocal in_a_row, last_log
            for image_id in pending:
                if found.error is not None:  # given up: what is left is counted below
                    return
                result = await self.clients.call(
                    self.service.name,
                    f"/{self.service.search}_get_similar_images_by_id",
                    json={"image_id": image_id, "min_matches": self.min_inliers},
                )
                progress.done += 1
                if result.ok:
                    in_a_row = 0
                    found.searched += 1
                    for hit in result.body:
                        other = int(hit["image_id"])
                        if other != image_id and hit.get("matches", 0) >= self.min_inliers:
                            pairs.add((min(image_id, other), max(image_id, other)))
                elif result.status_code == 404:
                    in_a_row = 0  # deleted since the listing: nothing to link
                else:
                    in_a_row += 1
                    found.failed += 1
                    progress.failed += 1
                    if result.outcome == "unavailable" or in_a_row >= FAILURES_IN_A_ROW:
                        found.error = f"{self.service.name} stopped answering: {result.detail}"
                if time.monotonic() - last_log >= LOG_EVERY_S:
                    last_log = time.monotonic()
                    log.info(
                        "duplicate groups: crops %d/%d searched (%d failed)",
                        progress.done,
                        progress.total,
                        progress.failed,
                    )

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        untried = len(ids) - progress.done
        found.failed += untried
        progress.failed += untried
        found.links = [(a, b, 0.0) for a, b in sorted(pairs)]
        log.info(
            "duplicate groups: crop search done: %d of %d images searched, %d failed, %d links%s",
            found.searched,
            found.images,
            found.failed,
            len(found.links),
            f" ({found.error})" if found.error else "",
        )
        return found


class Rebuilder:
    """Recomputes every link of a kind; a copies rebuild that searches for crops runs in the
    background, one per kind at a time."""

    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        enabled: set[str],
        sources: AnalysisSources,
        policy: LinkPolicy,
        crops: AlignedCrops,
        links: LinkStore,
        facts: ImageFacts,
        bursts: BurstLinks,
        sharpness: SharpnessStore,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.enabled = enabled
        self.sources = sources
        self.policy = policy
        self.crops = crops
        self.links = links
        self.facts = facts
        self.bursts = bursts
        self.sharpness = sharpness
        #: the background rebuilds, running or finished and not answered yet
        self._background: dict[str, RebuildJob] = {}

    async def rebuild(self, kind: str) -> dict[str, Any]:
        """The first call starts a background rebuild and raises :class:`Running` with its progress,
        as does every call while it runs; the first call after it has finished gets its result (or
        its error); the next one starts a new rebuild. A rebuild without crop searches answers at
        once."""
        if kind == "copies" and "phash" not in self.enabled:
            raise SourceUnavailable("copies need the phash service, which is not enabled")
        if kind == "bursts":
            background = bool(await run_in_threadpool(self.sharpness.unmeasured))
        else:
            background = kind == "copies" and self.policy.searches_crops()
        if not background and kind not in self._background:
            return await self.recompute(RebuildJob(kind))
        job = self._background.get(kind)
        if job is None:
            job = self._background[kind] = RebuildJob(kind)
            job.start(self.recompute)
            raise Running(job.running())
        if not job.finished:
            raise Running(job.running())
        del self._background[kind]
        assert job.task is not None
        return job.task.result()  # the job's result, or its exception raised here

    async def stop(self) -> None:
        """Cancel the background rebuilds (the gateway is stopping; nothing was written yet)."""
        tasks = [job.task for job in self._background.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def recompute(self, job: RebuildJob) -> dict[str, Any]:
        kind = job.kind
        # images deleted from here on (through any replica) must not be linked again
        started = await run_in_threadpool(self.links.generation, kind)
        if kind == "bursts":
            return await self._bursts(job, started)
        if kind == "copies":
            source, threshold = "phash", self.settings.duplicate_distance
        else:
            source, threshold = await self.sources.resolve(None), self.settings.similar_distance
        reply = await self.pairs(source, threshold, job)
        pairs: list[Link] = [(int(a), int(b), float(d)) for a, b, d in reply["pairs"]]
        result: dict[str, Any] = {"kind": kind, "source": source, "stale": reply["stale"]}
        if kind == "copies":
            pairs = await self._copies(pairs, job, result)
        else:
            times = await run_in_threadpool(self.facts.capture_times)
            gap = self.settings.similar_max_gap_s
            pairs = [
                (a, b, d)
                for a, b, d in pairs
                if a not in times or b not in times or abs(times[a] - times[b]) <= gap
            ]
        job.progress.phase = "saving"
        # logged: every replica reloads its groups
        written = await run_in_threadpool(self.links.replace, kind, pairs, started)
        return {**result, "links": written}

    async def _bursts(self, job: RebuildJob, started: int) -> dict[str, Any]:
        """The sharpness of the images that have none, then the stacks among every photo."""
        job.progress.phase = "sharpness"
        unmeasured = await run_in_threadpool(self.sharpness.unmeasured)
        job.progress.total = len(unmeasured)
        for image_id in unmeasured:
            try:
                await run_in_threadpool(self.sharpness.measure, image_id)
            except Exception as exc:  # an unreadable thumbnail: no sharpness, the rest goes on
                job.progress.failed += 1
                log.warning("duplicate groups: no sharpness for %d: %s", image_id, exc)
            job.progress.done += 1
        job.progress.phase = "stacks"
        links = await self.bursts.among_all()
        job.progress.phase = "saving"
        written = await run_in_threadpool(self.links.replace, "bursts", links, started)
        return {"kind": "bursts", "links": written, "measured": len(unmeasured) - job.progress.failed}

    async def _copies(self, pairs: list[Link], job: RebuildJob, result: dict[str, Any]) -> list[Link]:
        """phash's pairs, the crops local features verifies, the aligned thumbnails and the links
        recorded at add time, all through the copy checks again."""
        if self.policy.searches_crops():
            crops = await CropSearch(
                self.clients, self.settings.duplicate_local_min_inliers, self.settings.rebuild_crop_searches
            ).links(job.progress)
            result["crops"] = crops.summary()
            pairs = union_of_links(pairs, crops.links, prefer_found=True)
            if self.crops.active():
                job.progress.phase = "alignment"
                job.progress.done = job.progress.total = job.progress.failed = 0

                def advance(done: int, total: int) -> None:
                    job.progress.done, job.progress.total = done, total

                aligned = await self.crops.among_all(advance)
                result["aligned"] = len(aligned)
                pairs = union_of_links(pairs, aligned, prefer_found=True)
        # read last: the links recorded by adds made while the crops were searched count
        recorded = await run_in_threadpool(self.links.all, "copies")
        job.progress.phase = "colours"  # and the other checks of a copy link
        return await self.policy.copy_checks(union_of_links(pairs, recorded), whole=True)

    async def pairs(self, source: str, threshold: float, job: RebuildJob) -> dict[str, Any]:
        """The source's pairs within ``threshold``. In a background rebuild the service's own 202
        (a large collection) is waited out; a rebuild answered at once passes it on."""
        while True:
            try:
                # copies: a mirror is a copy; the service mirrors the stored hashes (phash)
                body = {"distance_threshold": threshold, "mirrored": job.kind == "copies"}
                return await self.sources.analyse(source, "pairs", body)
            except Running:
                if job.task is None:
                    raise
                await asyncio.sleep(PAIRS_POLL_S)
