"""Explore the collection: moments, duplicate and burst groups, the map, composed by the gateway.

Clustering and layout run inside the vector service that holds the vectors (the kit's
``/analysis/*`` routes, services/common/analysis_routes.py): the gateway never downloads the
vectors, it sends a small request and receives image ids. What only the gateway knows is added
here: capture times from its catalog (a moment never spans a longer gap than
``MOMENT_MAX_GAP_S``), file and pixel sizes (the keeper of a duplicate group), and the links between
duplicates, recorded at add time.

Duplicate groups are connected components of links (:class:`services.common.analysis.LinkGroups`):
``copies`` links an upload to what the duplicate search finds for it (phash within
``DUPLICATE_DISTANCE`` over the original and mirrored image, plus crops verified by local_features
with ``DUPLICATE_LOCAL_MIN_INLIERS`` inliers when that service is enabled, plus crops of smooth
pictures whose thumbnails align with the upload's: gateway/crop_alignment.py), except between two
different EXIF exposure times (a burst's frames) and where the colour histograms are further apart
than ``COPY_MAX_COLOR_DISTANCE``: a copy has the same pixels re-encoded, resized, cropped or
mirrored, while a recolouring of one shot has the same structure (phash and local features cannot
tell it from a JPEG copy) and belongs to ``similar``, as do a burst's frames. ``similar``
links to the stored images within ``SIMILAR_DISTANCE`` in the embedding source and, when both have a
capture time, ``SIMILAR_MAX_GAP_S``. Links live in the catalog; the groups are built from them in
memory at the first request and then brought up to date at each request from the catalog's change
log of links (:meth:`gateway.catalog.Catalog.link_changes`): the adds and deletes of every gateway
replica sharing the catalog, this one's included, applied one image at a time; a rebuild, or a log
that no longer reaches back to this copy's generation, reloads them whole. ``rebuild`` recomputes
the links from the services after a bulk import (``copies``: the pairs within ``DUPLICATE_DISTANCE``
over the stored hashes and their mirrors, the crops local features verifies among every stored
image (a search per image, in the background: gateway/rebuild.py), the thumbnail alignment of
every image with a preview, and the links recorded at add time, all checked again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway import live_photos, thumbnails
from gateway.catalog import Catalog, LinkChanges
from gateway.crop_alignment import grey_thumbnail, part_correlation
from gateway.photo_metadata import exposure_consistent, read_metadata, recorded_exposure
from gateway.proxy import ServiceClients
from gateway.rebuild import CropSearch, RebuildJob
from gateway.reverse_search import DuplicateSearchUnavailable, ReverseSearch
from gateway.settings import UPSTREAMS, GatewaySettings, Upstream
from services.common.analysis import LinkGroups, split_by_time

log = logging.getLogger("ambience.gateway")

Kind = Literal["copies", "similar"]


#: How long the default source's choice (the first default that answers /health) is kept.
DEFAULT_SOURCE_TTL_S = 5.0


class SourceUnavailable(Exception):
    """A service a reply depends on did not answer (HTTP 503, naming it)."""


class Running(Exception):
    """The service is still computing (HTTP 202 with its progress)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("running")
        self.body = body


class MomentsBody(BaseModel):
    granularity: float = Field(0.3, gt=0, le=1, description="clusters per image (kmeans)")
    source: str | None = Field(
        None, description="vector service (default: the first of EXPLORE_SOURCES enabled)"
    )
    method: Literal["kmeans", "density"] = Field("kmeans", description="kmeans, or density (DBSCAN, cosine)")
    eps: float = Field(0.2, gt=0, lt=2, description="density: cosine distance that makes neighbours")
    min_samples: int = Field(3, ge=1, le=1000, description="density: neighbours that make a core image")
    max_gap_s: float | None = Field(
        None,
        ge=0,
        description="split moments at capture-time gaps longer than this (default MOMENT_MAX_GAP_S)",
    )


class GroupsBody(BaseModel):
    kind: Kind = Field("copies", description="copies: the same picture; similar: near shots and bursts")


@dataclass
class KindGroups:
    """One kind's groups in memory and the catalog generation of links they reflect."""

    groups: LinkGroups
    generation: int


class Explorer:
    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        enabled: list[Upstream],
        reverse_search: ReverseSearch,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.enabled = {u.name for u in enabled}
        self.reverse_search = reverse_search
        self._catalog: Catalog | None = None
        self._groups: dict[str, KindGroups] = {}
        #: Held while groups are brought up to date and read: they change only under it.
        self._groups_lock = asyncio.Lock()
        #: How the groups were brought up to date: reloaded ``whole``, or by applying ``changes``.
        self.group_refreshes = {"whole": 0, "changes": 0}
        self._default_source: str | None = None
        self._default_checked = 0.0
        #: the background rebuilds, running or finished and not answered yet
        self._background: dict[str, RebuildJob] = {}

    def attach(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from services.common.postgres import DatabaseUnavailable

            raise DatabaseUnavailable("the catalog is not open yet (the gateway is starting)")
        return self._catalog

    # -- sources ------------------------------------------------------------------------------

    def source(self, requested: str | None) -> str:
        """The vector service to analyse: ``requested`` (422 when it cannot be), else the default."""
        if requested is not None:
            if requested not in ANALYSABLE:
                raise ValueError(f"source must be one of {', '.join(ANALYSABLE)}, not {requested!r}")
            if requested not in self.enabled:
                raise SourceUnavailable(f"source {requested} is not enabled (AMBIENCE_GATEWAY_SERVICES)")
            return requested
        for name in self.settings.explore_sources:
            if name in self.enabled and name in ANALYSABLE:
                return name
        raise SourceUnavailable(
            f"none of the default sources {', '.join(self.settings.explore_sources)} is enabled; "
            "name a source"
        )

    async def resolve_source(self, requested: str | None) -> str:
        """``requested``, else the first default source that answers its /health (a service without
        its model weights is enabled but down: moments then come from the next one). When none
        answers, the first enabled one, whose 503 names it. Checked at most every few seconds."""
        if requested is not None:
            return self.source(requested)
        candidates = [n for n in self.settings.explore_sources if n in self.enabled and n in ANALYSABLE]
        if not candidates:
            return self.source(None)  # raises, naming the setting
        now = time.monotonic()
        if self._default_source is not None and now - self._default_checked < DEFAULT_SOURCE_TTL_S:
            return self._default_source
        checks = await asyncio.gather(*(self.clients.health(n) for n in candidates))
        chosen = next((n for n, c in zip(candidates, checks, strict=True) if c.ok), candidates[0])
        self._default_source, self._default_checked = chosen, now
        return chosen

    def has_default_source(self) -> bool:
        try:
            self.source(None)
        except SourceUnavailable:
            return False
        return True

    async def analyse(self, source: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.clients.call(source, f"/analysis/{path}", json=body or {})
        if result.status_code == 202:
            raise Running({"status": "running", "source": source, **(result.body or {})})
        if not result.ok:
            raise SourceUnavailable(f"service {source} could not answer /analysis/{path}: {result.detail}")
        return result.body

    # -- moments ------------------------------------------------------------------------------

    async def moments(self, body: MomentsBody) -> dict[str, Any]:
        source = await self.resolve_source(body.source)
        reply = await self.analyse(
            source, "moments", body.model_dump(include={"granularity", "method", "eps", "min_samples"})
        )
        gap = self.settings.moment_max_gap_s if body.max_gap_s is None else body.max_gap_s
        times = await run_in_threadpool(self.catalog.capture_times) if gap > 0 else {}
        moments = []
        for cluster in reply["moments"]:
            members: list[int] = cluster["members"]
            for part in split_by_time(members, times, gap) if times else [members]:
                moments.append(part)
        moments.sort(key=lambda m: (-len(m), m[0]))
        return {
            "source": source,
            "method": body.method,
            "stale": reply["stale"],
            "moments": [
                {"moment": n, "representative": m[0], "size": len(m), "members": m}
                for n, m in enumerate(moments)
            ],
            "noise": reply["noise"],
        }

    async def map(self, source_name: str | None, granularity: float) -> dict[str, Any]:
        source = await self.resolve_source(source_name)
        layout, moments = await asyncio.gather(
            self.analyse(source, "map"),
            self.moments(MomentsBody(source=source, granularity=granularity)),
        )
        moment_of = {m: c["moment"] for c in moments["moments"] for m in c["members"]}
        return {
            "source": source,
            "stale": layout["stale"] or moments["stale"],
            "points": [{**p, "moment": moment_of.get(p["image_id"])} for p in layout["points"]],
        }

    # -- duplicate groups ---------------------------------------------------------------------

    async def _current_groups(self, kind: str) -> LinkGroups:
        """The groups of ``kind`` as the catalog has them now (hold ``_groups_lock``): the changes
        logged since this copy's generation applied (one query when there are none), else loaded
        whole."""
        cached = self._groups.get(kind)
        if cached is not None:
            logged = await run_in_threadpool(self.catalog.link_changes, kind, cached.generation)
            if await self._apply_changes(kind, cached, logged):
                return cached.groups
        snapshot = await run_in_threadpool(self.catalog.link_snapshot, kind)
        groups = groups_from_links(snapshot.images, snapshot.links)
        self._groups[kind] = KindGroups(groups, snapshot.generation)
        self.group_refreshes["whole"] += 1
        return groups

    async def _apply_changes(self, kind: str, cached: KindGroups, logged: LinkChanges) -> bool:
        """Apply the logged changes to ``cached``; False when only a whole reload can bring it up to
        date: every link was replaced (a rebuild), the log no longer reaches back to the copy's
        generation, or the catalog is behind it (restored from a backup)."""
        changes = logged.changes
        if not changes:
            return logged.generation == cached.generation
        if changes[0].generation != cached.generation + 1 or any(c.change == "rebuild" for c in changes):
            return False
        added = sorted({c.image_id for c in changes if c.change == "add" and c.image_id is not None})
        links = await run_in_threadpool(self.catalog.links_of, kind, added) if added else []
        by_image = links_by_image(links)
        # The links are read now, so they may be newer than a change (a later delete has dropped
        # them already): the changes after it, applied in the next request, settle the same state.
        for change in changes:
            if change.image_id is None:
                continue
            if change.change == "remove":
                cached.groups.remove(change.image_id)
            else:
                add_linked(cached.groups, change.image_id, by_image.get(change.image_id, []))
        cached.generation = changes[-1].generation
        self.group_refreshes["changes"] += 1
        return True

    async def duplicate_groups(self, kind: str) -> dict[str, Any]:
        async with self._groups_lock:  # held throughout: the reply is one state of the groups
            groups = await self._current_groups(kind)
            return await self._describe_groups(kind, groups)

    async def _describe_groups(self, kind: str, groups: LinkGroups) -> dict[str, Any]:
        found = groups.groups()
        info = await run_in_threadpool(self.catalog.info, sorted(m for g in found for m in g))
        out = []
        for members in found:
            keeper = max(members, key=lambda m: keeper_rank(info.get(m, {}), m))
            distances = groups.distances_from(keeper)
            ordered = sorted(members - {keeper}, key=lambda m: (distances[m][0], m))
            out.append(
                {
                    "keeper": keeper,
                    "size": len(members),
                    "members": [{"image_id": keeper, "distance": 0.0, "direct": True}]
                    + [
                        {"image_id": m, "distance": round(distances[m][0], 5), "direct": distances[m][1]}
                        for m in ordered
                    ],
                }
            )
        out.sort(key=lambda g: (-g["size"], g["keeper"]))
        return {"kind": kind, "groups": out}

    async def links_for(self, kind: str, image_id: int, data: bytes) -> list[tuple[int, float]]:
        """What an upload is linked to: its duplicates (copies) or near shots (similar)."""
        if kind == "copies":
            try:
                found = (await self.reverse_search.duplicates(data)).get("duplicate", [])
            except DuplicateSearchUnavailable as exc:
                log.warning("duplicate groups: no copies links for %d: %s", image_id, exc)
                return []
            # local-only matches carry no distance; they count as linked at distance 0 of phash
            links = [(h["image_id"], float(h["distance"] or 0.0)) for h in found if h["image_id"] != image_id]
            links += await self.aligned_crops(image_id, {other for other, _ in links})
            kept = await self.copy_checks([(image_id, other, d) for other, d in links])
            return [(other, d) for _, other, d in kept]
        source = await self.resolve_source(None)
        result = await self.clients.call(
            source,
            f"/{UPSTREAMS[source].search}_get_similar_images_by_id",
            json={"image_id": image_id, "distance_threshold": self.settings.similar_distance},
        )
        if not result.ok:
            log.warning("duplicate groups: no similar links for %d: %s", image_id, result.detail)
            return []
        hits = [(h["image_id"], float(h["distance"])) for h in result.body if h["image_id"] != image_id]
        return await self.within_time(image_id, hits)

    async def aligned_crops(self, image_id: int, linked: set[int]) -> list[tuple[int, float]]:
        """Crops of smooth pictures: the ``COPY_ALIGNMENT_CANDIDATES`` colour-nearest stored images
        (a crop keeps its source's colours: the source is its nearest on every shared photo) whose
        thumbnail aligns with the upload's at ``COPY_ALIGNMENT_MIN_CORRELATION`` or more, either
        one the part (gateway/crop_alignment.py). Linked at distance 0, as a verified crop. Needs
        the color service and the thumbnails (made before this runs, by the thumbnail keeper)."""
        wanted = self.settings.copy_alignment_candidates
        if not self.aligns_crops():
            return []
        result = await self.clients.call(
            "color",
            f"/{UPSTREAMS['color'].search}_get_similar_images_by_id",
            json={"image_id": image_id, "k": wanted + 1},
        )
        if not result.ok:
            log.warning("duplicate groups: no crop alignment for %d: %s", image_id, result.detail)
            return []
        candidates = [h["image_id"] for h in result.body if h["image_id"] not in {image_id, *linked}]
        if not candidates:
            return []
        settings = self.settings
        db = self.catalog.db

        def align() -> list[tuple[int, float]]:
            mine = thumbnails.get(db, image_id)
            if mine is None:
                return []
            upload = grey_thumbnail(mine.webp)
            found = []
            for other in candidates[:wanted]:
                theirs = thumbnails.get(db, other)
                if theirs is None:
                    continue
                stored = grey_thumbnail(theirs.webp)
                aligned = part_correlation(upload, stored, settings.copy_alignment_min_area)
                if aligned.correlation >= settings.copy_alignment_min_correlation:
                    found.append((other, 0.0))
            return found

        return await run_in_threadpool(align)

    async def copy_checks(
        self, links: list[tuple[int, int, float]], whole: bool = False
    ) -> list[tuple[int, int, float]]:
        """The copy links that neither rule vetoes: the same colours (:meth:`same_colours`), then
        one exposure per group (:meth:`same_exposure`). ``whole``: ``links`` are every link of the
        kind (a rebuild), else new links of one image next to the recorded ones."""
        return await self.same_exposure(await self.same_colours(links), whole)

    async def same_exposure(
        self, links: list[tuple[int, int, float]], whole: bool = False
    ) -> list[tuple[int, int, float]]:
        """The copy links that keep each group to one exposure time: a burst's frames can be as
        alike as a re-encode (phash bits, local features, aligned pixels), but the camera stamped
        each with its own time; a copy that lost its EXIF has none and joins only the frame it is
        nearest to (:func:`gateway.photo_metadata.exposure_consistent`). New links are weighed
        against the recorded links of the images they touch (one hop of their groups)."""
        if not links or not self.settings.copy_exposure_check:
            return links
        touched = sorted({i for a, b, _ in links for i in (a, b)})
        pinned = [] if whole else await run_in_threadpool(self.catalog.links_of, "copies", touched)
        ids = sorted({*touched, *(i for a, b, _ in pinned for i in (a, b))})
        info = await run_in_threadpool(self.catalog.info, ids)
        exposure = {i: recorded_exposure(info.get(i, {})) for i in ids}
        return exposure_consistent(links, exposure, pinned)

    async def same_colours(self, links: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
        """The copy links whose images' colour histograms are within ``COPY_MAX_COLOR_DISTANCE``
        (the color service's L1), asked of the color service by pair. Without the color service,
        with the check off, or where a colour is unknown (not stored yet) a link is kept: no
        evidence of a recolouring."""
        threshold = self.settings.copy_max_color_distance
        if not links or threshold <= 0 or "color" not in self.enabled:
            return links
        kept: list[tuple[int, int, float]] = []
        for start in range(0, len(links), DISTANCE_PAIRS_PER_CALL):
            chunk = links[start : start + DISTANCE_PAIRS_PER_CALL]
            result = await self.clients.call(
                "color", "/analysis/distances", json={"pairs": [[a, b] for a, b, _ in chunk]}
            )
            if not result.ok:
                log.warning("duplicate groups: copies kept without the colour check: %s", result.detail)
                kept += chunk
                continue
            for link, colour in zip(chunk, result.body["distances"], strict=True):
                if colour is None or colour <= threshold:
                    kept.append(link)
        return kept

    async def within_time(self, image_id: int, hits: list[tuple[int, float]]) -> list[tuple[int, float]]:
        if not hits:
            return hits
        info = await run_in_threadpool(self.catalog.info, [image_id, *(h[0] for h in hits)])
        mine = info.get(image_id, {}).get("captured_at")
        if mine is None:
            return hits
        kept = []
        for other, distance in hits:
            theirs = info.get(other, {}).get("captured_at")
            if theirs is None or abs((theirs - mine).total_seconds()) <= self.settings.similar_max_gap_s:
                kept.append((other, distance))
        return kept

    # -- the add path (a gateway.writer.WriteListener) ----------------------------------------

    async def image_added(
        self, image_id: int, data: bytes, file_name: str | None, source: bytes | None = None
    ) -> None:
        """After an add: record the image's metadata (of ``source``, the upload the services got a
        still of, when there is one), pair the halves of a Live Photo, link the image into the
        duplicate groups. Never fails the add (the links can be rebuilt); problems are logged."""
        try:
            info = await run_in_threadpool(read_metadata, source or data, file_name)
            await run_in_threadpool(self.catalog.record_info, image_id, info)
            await run_in_threadpool(live_photos.pair, self.catalog.db, image_id, info)
            for kind in ("copies", "similar"):
                if kind == "similar" and not self.has_default_source():
                    continue  # no embedding service: nothing to call a near shot
                links = await self.links_for(kind, image_id, data)
                # logged: every replica's groups (this one's too) take it in at their next request
                await run_in_threadpool(self.catalog.add_links, kind, image_id, links)
        except (SourceUnavailable, ValueError) as exc:
            log.warning("explore: image %d only partly recorded: %s", image_id, exc)
        except Exception:
            log.exception("explore: recording image %d failed", image_id)

    async def image_deleted(self, image_id: int) -> None:
        try:
            await run_in_threadpool(self.catalog.forget_info, image_id)  # logged, as add_links
            await run_in_threadpool(live_photos.unpair, self.catalog.db, image_id)
        except Exception:
            log.exception("explore: forgetting image %d failed", image_id)

    def searches_crops(self) -> bool:
        """Whether a copies rebuild searches every image for crops (local_features enabled and
        ``DUPLICATE_LOCAL_MIN_INLIERS`` above 0, as the add path)."""
        return "local_features" in self.enabled and self.settings.duplicate_local_min_inliers > 0

    def aligns_crops(self) -> bool:
        """Whether crops are looked for by aligning thumbnails (the color service finds the
        candidates)."""
        return self.settings.copy_alignment_candidates > 0 and "color" in self.enabled

    async def aligned_links(self, job: RebuildJob) -> list[tuple[int, int, float]]:
        """The add path's thumbnail alignment (:meth:`aligned_crops`) for every image that has a
        thumbnail: the crops of smooth pictures among images the add path never saw (imported,
        their previews made since). Part of the background copies rebuild, after the crops."""
        job.progress.phase = "alignment"
        ids = await run_in_threadpool(thumbnails.ids, self.catalog.db)
        job.progress.done, job.progress.total, job.progress.failed = 0, len(ids), 0
        pairs: set[tuple[int, int]] = set()
        for image_id in ids:
            for other, _ in await self.aligned_crops(image_id, set()):
                pairs.add((min(image_id, other), max(image_id, other)))
            job.progress.done += 1
        return [(a, b, 0.0) for a, b in sorted(pairs)]

    async def rebuild(self, kind: str) -> dict[str, Any]:
        """Recompute every link of ``kind`` from the services (after a bulk import). A copies rebuild
        that searches for crops runs in the background: the first call starts it, every call while
        it runs raises :class:`Running` with its progress, the first call after it has finished gets
        its result (or its error); the next one starts a new rebuild."""
        if kind == "copies" and "phash" not in self.enabled:
            raise SourceUnavailable("copies need the phash service, which is not enabled")
        if kind != "copies" or not self.searches_crops():
            return await self.recompute_links(RebuildJob(kind))
        job = self._background.get(kind)
        if job is None:
            job = self._background[kind] = RebuildJob(kind)
            job.start(self.recompute_links)
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

    async def recompute_links(self, job: RebuildJob) -> dict[str, Any]:
        kind = job.kind
        # images deleted from here on (through any replica) must not be linked again
        started = await run_in_threadpool(self.catalog.link_generation, kind)
        if kind == "copies":
            source, threshold = "phash", self.settings.duplicate_distance
        else:
            source, threshold = await self.resolve_source(None), self.settings.similar_distance
        reply = await self.pairs(source, threshold, job)
        pairs = [(int(a), int(b), float(d)) for a, b, d in reply["pairs"]]
        result: dict[str, Any] = {"kind": kind, "source": source, "stale": reply["stale"]}
        if kind == "copies":
            if self.searches_crops():
                crops = await CropSearch(
                    self.clients,
                    self.settings.duplicate_local_min_inliers,
                    self.settings.rebuild_crop_searches,
                ).links(job.progress)
                result["crops"] = crops.summary()
                pairs = union_of_links(pairs, crops.links, prefer_found=True)
                if self.aligns_crops():
                    aligned = await self.aligned_links(job)
                    result["aligned"] = len(aligned)
                    pairs = union_of_links(pairs, aligned, prefer_found=True)
            # read last: the links recorded by adds made while the crops were searched count
            recorded = await run_in_threadpool(self.catalog.links, kind)
            job.progress.phase = "colours"  # and the other checks of a copy link
            pairs = await self.copy_checks(union_of_links(pairs, recorded), whole=True)
        else:
            times = await run_in_threadpool(self.catalog.capture_times)
            gap = self.settings.similar_max_gap_s
            pairs = [
                (a, b, d)
                for a, b, d in pairs
                if a not in times or b not in times or abs(times[a] - times[b]) <= gap
            ]
        job.progress.phase = "saving"
        # logged: every replica reloads its groups
        written = await run_in_threadpool(self.catalog.replace_links, kind, pairs, started)
        return {**result, "links": written}

    async def pairs(self, source: str, threshold: float, job: RebuildJob) -> dict[str, Any]:
        """The source's pairs within ``threshold``. In a background rebuild the service's own 202
        (a large collection) is waited out; a rebuild answered at once passes it on."""
        while True:
            try:
                # copies: a mirror is a copy; the service mirrors the stored hashes (phash)
                body = {"distance_threshold": threshold, "mirrored": job.kind == "copies"}
                return await self.analyse(source, "pairs", body)
            except Running:
                if job.task is None:
                    raise
                await asyncio.sleep(PAIRS_POLL_S)


#: Seconds between asks of a service still computing the pairs of a background rebuild.
PAIRS_POLL_S = 2.0
#: Services whose stored vectors the kit's analysis routes serve (one vector per image).
ANALYSABLE = ("image_text", "global_features", "color", "phash")
#: Pairs per /analysis/distances call (the services' MAX_DISTANCE_PAIRS).
DISTANCE_PAIRS_PER_CALL = 10_000


def union_of_links(
    found: list[tuple[int, int, float]], recorded: list[tuple[int, int, float]], prefer_found: bool = False
) -> list[tuple[int, int, float]]:
    """Both lists of links, each pair once (smaller id first) at its smallest distance, or with
    ``prefer_found`` at its distance in ``found`` where it is there (a crop local features verified
    is linked at 0, but a pair phash also found keeps its phash distance, as at add time)."""
    best: dict[tuple[int, int], float] = {}
    for a, b, d in found:
        key = (min(a, b), max(a, b))
        best[key] = min(d, best.get(key, d))
    for a, b, d in recorded:
        key = (min(a, b), max(a, b))
        if not (prefer_found and key in best):
            best[key] = min(d, best.get(key, d))
    return [(a, b, d) for (a, b), d in sorted(best.items())]


def keeper_rank(info: dict[str, Any], image_id: int) -> tuple[int, int, int]:
    """Largest pixel count, then largest file; the smallest id breaks ties (kept stable)."""
    pixels = (info.get("width") or 0) * (info.get("height") or 0)
    return pixels, info.get("bytes") or 0, -image_id


def links_by_image(links: list[tuple[int, int, float]]) -> dict[int, list[tuple[int, float]]]:
    """Per image, the other end and distance of each of its links."""
    by_image: dict[int, list[tuple[int, float]]] = {}
    for a, b, d in links:
        by_image.setdefault(a, []).append((b, d))
        by_image.setdefault(b, []).append((a, d))
    return by_image


def groups_from_links(images: list[int], links: list[tuple[int, int, float]]) -> LinkGroups:
    """The groups of ``images`` and of every image a link names: one written to the services by
    ``ambience import`` is known to the gateway by its links only (the catalog leaves out the links
    of images being deleted or forgotten)."""
    groups = LinkGroups()
    by_image = links_by_image(links)
    for image in sorted({*images, *by_image}):
        groups.add(image, by_image.get(image, []))
    return groups


def add_linked(groups: LinkGroups, image: int, links: list[tuple[int, float]]) -> None:
    """Record ``image`` with its links, and the images at their other ends that ``groups`` does not
    hold yet (added images whose own change is not applied yet, or that have no change logged:
    a whole load holds them too)."""
    for other, _ in links:
        if other not in groups.group_of:
            groups.add(other, [])
    groups.add(image, links)
