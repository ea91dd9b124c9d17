"""Reverse search: one query image sent to the search services at once, their answers cleaned and
fused.

- normal mode (:meth:`ReverseSearch.similar`): every enabled search service, each bounded by its
  search timeout; a service that fails or is too slow is left out (named in :attr:`Similar.failed`,
  which the route puts in a header: the reply keeps the upstream shape, only lists of hits, since
  the gallery iterates every key of it); the rankings are fused by weighted reciprocal rank
  (gateway/fusion.py);
- duplicate mode (:meth:`ReverseSearch.duplicates`): phash within ``duplicate_distance``, plus, when
  configured, local-feature matches with enough inliers (a crop that phash cannot see), less the
  images the camera stamped with another exposure time than the query's (a burst's other frames).

:func:`merge_rankings` and :func:`merge_duplicates` are the policies, pure functions over the
services' replies; :class:`ReverseSearch` makes the calls. No HTTP server here: the route
(gateway/routes/search.py) turns :class:`DuplicateSearchUnavailable` into a 503.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.exposure import different_exposures, recorded_exposure
from gateway.fusion import clean_hits, reciprocal_rank_fusion
from gateway.image_facts import ImageFacts
from gateway.photo_metadata import read_metadata
from gateway.proxy import CallResult, ServiceClients
from gateway.runner_marks import RunnerMarks
from gateway.settings import UPSTREAMS, GatewaySettings, Upstream

log = logging.getLogger("ambience.gateway")

#: Hits kept per service in duplicate mode: every image within the distance, in practice.
DUPLICATE_HIT_LIMIT = 10_000


class DuplicateSearchUnavailable(Exception):
    """Duplicate mode cannot give a truthful answer (phash not enabled, or it did not answer)."""


class QueryRejected(Exception):
    """Every service asked refused the query image with a 4xx: the image is bad, not the services
    (a 503 would make clients retry, a 200 with every service failed would hide it)."""

    def __init__(self, replies: list[CallResult]) -> None:
        first = replies[0]
        super().__init__(f"no service accepted the query image: {first.detail}")
        self.details = {r.service: r.detail for r in replies}
        #: The services' own verdict (422 bad image, 413 too large, 415 format).
        self.status_code = first.status_code or 422


def refuse_if_rejected(replies: list[CallResult]) -> None:
    """Raise :class:`QueryRejected` when every reply is a 4xx: the one rule of both modes."""
    if replies and all(r.status_code is not None and 400 <= r.status_code < 500 for r in replies):
        raise QueryRejected(replies)


@dataclass
class Similar:
    """A normal-mode answer: ``reply`` (only lists of hits, the upstream shape) and ``failed``
    (service -> why it contributed nothing), kept out of the reply."""

    reply: dict[str, list[dict[str, Any]]]
    failed: dict[str, str]


def merge_rankings(
    upstreams: list[Upstream], replies: list[CallResult], settings: GatewaySettings
) -> Similar:
    """The normal-mode answer: each service's cleaned top hits under its result key (an empty list
    for every known key without hits), ``unified_res`` fused from them; the services that
    contributed nothing and why in :attr:`Similar.failed`."""
    out: dict[str, list[dict[str, Any]]] = {
        u.result_key: [] for u in UPSTREAMS.values() if u.result_key is not None
    }
    rankings: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for upstream, reply in zip(upstreams, replies, strict=True):
        if reply.ok and isinstance(reply.body, list):
            hits = clean_hits(reply.body, settings.result_k)
            out[upstream.result_key or upstream.name] = hits
            rankings[upstream.name] = hits
        else:
            failed[upstream.name] = f"{reply.outcome}: {reply.detail or 'unexpected reply'}"
    out["unified_res"] = reciprocal_rank_fusion(
        rankings,
        settings.fusion_weights,
        settings.fusion_constant,
        settings.fused_length,
        settings.fusion_max_distance,
        settings.fusion_tie_tolerance,
        settings.fusion_relative_distance,
    )
    return Similar(out, failed)


def merge_duplicates(
    phash: CallResult, local: CallResult | None, settings: GatewaySettings
) -> dict[str, Any]:
    """The duplicate-mode reply: ``{"duplicate": [{"image_id", "distance", "matches"?}]}`` ordered by
    phash distance (local-only matches last, most inliers first), or ``{}`` when there is none.

    ``local`` is None when local features take no part; a local reply that failed is logged and
    ignored (phash alone still answers), but a failed phash reply raises
    :class:`DuplicateSearchUnavailable`: "no duplicate" would be a lie the gallery acts on."""
    if not phash.ok:
        raise DuplicateSearchUnavailable(f"phash could not answer: {phash.detail}")
    found = {
        h["image_id"]: {"image_id": h["image_id"], "distance": h.get("distance")}
        for h in clean_hits(phash.body, DUPLICATE_HIT_LIMIT)
    }
    if local is not None:
        if local.ok:
            for hit in clean_hits(local.body, DUPLICATE_HIT_LIMIT):
                matches = hit.get("matches", 0)
                if matches >= settings.duplicate_local_min_inliers:
                    entry = found.setdefault(hit["image_id"], {"image_id": hit["image_id"], "distance": None})
                    entry["matches"] = matches
        else:
            log.warning("duplicate search without local features: %s", local.detail)
    if not found:
        return {}
    ordered = sorted(
        found.values(), key=lambda e: (e["distance"] is None, e["distance"] or 0, -e.get("matches", 0))
    )
    return {"duplicate": ordered}


def other_exposures(
    query: tuple[datetime, bool] | None, stored: dict[int, dict[str, Any]], found: dict[str, Any]
) -> dict[str, Any]:
    """``found`` (a duplicate-mode reply) without the images whose recorded exposure time differs
    from the query's (``stored``: the catalog's info per id): another frame of a burst is a near
    shot, not a duplicate, however alike. ``{}`` when nothing is left."""
    if query is None or not found:
        return found
    kept = [
        h
        for h in found["duplicate"]
        if not different_exposures(query, recorded_exposure(stored.get(h["image_id"], {})))
    ]
    return {"duplicate": kept} if kept else {}


class ReverseSearch:
    """Reverse search over the ``enabled`` upstreams, calling them through ``clients``."""

    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        enabled: list[Upstream],
        facts: ImageFacts | None = None,
        marks: RunnerMarks | None = None,
    ) -> None:
        """``facts``: the exposure times of the images a duplicate search finds (none: every
        duplicate stands); ``marks``: the services ``ambience serve`` could not start (their model
        weights are missing), which duplicate searches do without."""
        self.settings = settings
        self.clients = clients
        self.enabled = enabled
        self.marks = marks
        self.search_services = [u for u in enabled if u.search]
        self.facts = facts

    async def search(self, upstream: Upstream, data: bytes, fields: dict[str, str]) -> CallResult:
        """One service's by-image search; the whole call, connection included, is bounded by its
        search timeout, so a hung service is left out instead of holding the reply."""
        path = f"/{upstream.search}_get_similar_images_by_image_buffer"
        timeout = self.settings.search_timeout(upstream.name)
        try:
            return await asyncio.wait_for(
                self.clients.send_image(upstream.name, path, data, fields, timeout=timeout), timeout
            )
        except TimeoutError:
            return CallResult(upstream.name, "failed", detail=f"no answer within {timeout:g}s")

    async def similar(self, data: bytes) -> Similar:
        """Normal mode: every search service at once, fused (see :func:`merge_rankings`)."""
        fields = {"k": str(self.settings.result_k)}
        replies = await asyncio.gather(*(self.search(u, data, fields) for u in self.search_services))
        refuse_if_rejected(list(replies))
        return merge_rankings(self.search_services, list(replies), self.settings)

    def uses_local_features(self) -> bool:
        """Whether crops are verified with local features: it is enabled, ``DUPLICATE_LOCAL_MIN_INLIERS``
        is above 0, and the runner did not mark it unavailable (it would not answer until restarted
        with its weights: a step waiting for it would wait for days)."""
        local = UPSTREAMS["local_features"]
        if self.settings.duplicate_local_min_inliers <= 0 or local not in self.enabled:
            return False
        return self.marks is None or local.name not in self.marks.marked()

    async def duplicates_of(self, image_id: int) -> dict[str, Any]:
        """Duplicate mode for a stored image, searched by its id on every service (no upload sent):
        phash's stored hash and its mirror, local features' stored keypoints, the exposure time
        recorded in the image's facts; the image itself left out. Unlike the upload's search, a
        local-features reply that failed raises too: the caller (a step that follows the add)
        tries again later rather than miss a crop. ``{}`` when phash does not hold the image."""
        phash = UPSTREAMS["phash"]
        if phash not in self.enabled:
            raise DuplicateSearchUnavailable("duplicate search needs the phash service, which is not enabled")
        local = UPSTREAMS["local_features"]
        use_local = self.uses_local_features()
        calls = [
            self.clients.call(
                phash.name,
                f"/{phash.search}_get_similar_images_by_id",
                json={"image_id": image_id, "distance_threshold": self.settings.duplicate_distance},
            )
        ]
        if use_local:
            needed = {"image_id": image_id, "min_matches": self.settings.duplicate_local_min_inliers}
            calls.append(
                self.clients.call(local.name, f"/{local.search}_get_similar_images_by_id", json=needed)
            )
        replies = await asyncio.gather(*calls)
        if replies[0].status_code == 404:
            return {}  # phash refused the image: nothing is a copy of it
        if use_local and not replies[1].ok and replies[1].status_code != 404:
            raise DuplicateSearchUnavailable(f"local_features could not answer: {replies[1].detail}")
        local_reply = replies[1] if use_local and replies[1].ok else None
        found = merge_duplicates(replies[0], local_reply, self.settings)
        kept = [h for h in found.get("duplicate", []) if h["image_id"] != image_id]
        found = {"duplicate": kept} if kept else {}
        if not found or not self.settings.copy_exposure_check or self.facts is None:
            return found
        ids = [image_id, *(h["image_id"] for h in kept)]
        stored = await run_in_threadpool(self.facts.info, ids)
        return other_exposures(recorded_exposure(stored.get(image_id, {})), stored, found)

    async def duplicates(self, data: bytes) -> dict[str, Any]:
        """Duplicate mode (see :func:`merge_duplicates`)."""
        phash = UPSTREAMS["phash"]
        if phash not in self.enabled:
            raise DuplicateSearchUnavailable("duplicate search needs the phash service, which is not enabled")
        local = UPSTREAMS["local_features"]
        use_local = self.uses_local_features()
        calls = [self.search(phash, data, {"distance_threshold": str(self.settings.duplicate_distance)})]
        if use_local:
            # every image verified with enough inliers (the service skips the geometry of candidates
            # that cannot reach it), not the top k of a lower bar
            needed = {"min_matches": str(self.settings.duplicate_local_min_inliers)}
            calls.append(self.search(local, data, needed))
        replies = await asyncio.gather(*calls)
        refuse_if_rejected(replies[:1])  # phash decides: local features alone never make the answer
        found = merge_duplicates(replies[0], replies[1] if use_local else None, self.settings)
        if not found or not self.settings.copy_exposure_check or self.facts is None:
            return found
        query = recorded_exposure(read_metadata(data, None))
        if query is None:
            return found
        stored = await run_in_threadpool(self.facts.info, [h["image_id"] for h in found["duplicate"]])
        return other_exposures(query, stored, found)
