"""What links an image, and which links stand.

``copies`` links an added image to what the duplicate search by its stored id finds for it (phash within
``DUPLICATE_DISTANCE`` over the original and mirrored image, plus crops verified by local_features
with ``DUPLICATE_LOCAL_MIN_INLIERS`` inliers when that service is enabled, plus crops of smooth
pictures whose thumbnails align: gateway/duplicates/crops.py), except between two different EXIF
exposure times (gateway/duplicates/exposure.py) and where the colour histograms are further apart
than ``COPY_MAX_COLOR_DISTANCE``: a copy has the same pixels re-encoded, resized, cropped or
mirrored, while a recolouring of one shot has the same structure (phash and local features cannot
tell it from a JPEG copy) and belongs to ``similar``, as do a burst's frames. ``similar`` links to
the stored images within ``SIMILAR_DISTANCE`` in the embedding source and, when both have a capture
time, ``SIMILAR_MAX_GAP_S``.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.crops import AlignedCrops
from gateway.duplicates.exposure import exposure_consistent, recorded_exposure
from gateway.duplicates.groups import Link
from gateway.duplicates.links import LinkStore
from gateway.image_facts import ImageFacts
from gateway.proxy import ServiceClients
from gateway.reverse_search import ReverseSearch
from gateway.settings import UPSTREAMS, GatewaySettings
from gateway.sources import AnalysisSources, SourceUnavailable

log = logging.getLogger("ambience.gateway")

#: Pairs per /analysis/distances call (the services' MAX_DISTANCE_PAIRS).
DISTANCE_PAIRS_PER_CALL = 10_000


class LinkPolicy:
    """Finds an added image's links and checks links against the copy rules."""

    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        enabled: set[str],
        reverse_search: ReverseSearch,
        sources: AnalysisSources,
        facts: ImageFacts,
        links: LinkStore,
        crops: AlignedCrops,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.enabled = enabled
        self.reverse_search = reverse_search
        self.sources = sources
        self.facts = facts
        self.links = links
        self.crops = crops

    def searches_crops(self) -> bool:
        """Whether crops are verified with local features (see ReverseSearch.uses_local_features)."""
        return self.reverse_search.uses_local_features()

    async def links_of(self, kind: str, image_id: int) -> list[tuple[int, float]]:
        """What a stored image is linked to: its duplicates (copies) or near shots (similar),
        searched by its id on the services. A service that does not answer raises (the step that
        asked tries again later); one that is not enabled links nothing."""
        if kind == "copies":
            if "phash" not in self.enabled:
                return []
            found = (await self.reverse_search.duplicates_of(image_id)).get("duplicate", [])
            # local-only matches carry no distance; they count as linked at distance 0 of phash
            links = [(h["image_id"], float(h["distance"] or 0.0)) for h in found]
            links += await self.crops.of(image_id, {other for other, _ in links})
            kept = await self.copy_checks([(image_id, other, d) for other, d in links])
            return [(other, d) for _, other, d in kept]
        if not self.sources.has_default():
            return []  # no embedding service: nothing to call a near shot
        source = await self.sources.resolve(None)
        result = await self.clients.call(
            source,
            f"/{UPSTREAMS[source].search}_get_similar_images_by_id",
            json={"image_id": image_id, "distance_threshold": self.settings.similar_distance},
        )
        if result.status_code == 404:
            return []  # the source does not hold the image (it refused it)
        if not result.ok:
            raise SourceUnavailable(f"{source} could not search near shots: {result.detail}")
        hits = [(h["image_id"], float(h["distance"])) for h in result.body if h["image_id"] != image_id]
        return await self.within_time(image_id, hits)

    async def copy_checks(self, links: list[Link], whole: bool = False) -> list[Link]:
        """The copy links that neither rule vetoes: the same colours (:meth:`same_colours`), then
        one exposure per group (:meth:`same_exposure`). ``whole``: ``links`` are every link of the
        kind (a rebuild), else new links of one image next to the recorded ones."""
        return await self.same_exposure(await self.same_colours(links), whole)

    async def same_exposure(self, links: list[Link], whole: bool = False) -> list[Link]:
        """The copy links that keep each group to one exposure time; new links are weighed against
        the recorded links of the images they touch (one hop of their groups)."""
        if not links or not self.settings.copy_exposure_check:
            return links
        touched = sorted({i for a, b, _ in links for i in (a, b)})
        pinned = [] if whole else await run_in_threadpool(self.links.touching, "copies", touched)
        ids = sorted({*touched, *(i for a, b, _ in pinned for i in (a, b))})
        # an image whose add is being finished beside this one may have no facts step done yet
        info = await run_in_threadpool(self.facts.info_or_recorded, ids)
        exposure = {i: recorded_exposure(info.get(i, {})) for i in ids}
        return exposure_consistent(links, exposure, pinned)

    async def same_colours(self, links: list[Link]) -> list[Link]:
        """The copy links whose images' colour histograms are within ``COPY_MAX_COLOR_DISTANCE``
        (the color service's L1), asked of the color service by pair. Without the color service,
        with the check off, or where a colour is unknown (not stored yet) a link is kept: no
        evidence of a recolouring."""
        threshold = self.settings.copy_max_color_distance
        if not links or threshold <= 0 or "color" not in self.enabled:
            return links
        kept: list[Link] = []
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
        """The near shots of ``image_id`` within ``SIMILAR_MAX_GAP_S`` of it where both have a
        capture time."""
        if not hits:
            return hits
        info = await run_in_threadpool(self.facts.info, [image_id, *(h[0] for h in hits)])
        mine = info.get(image_id, {}).get("captured_at")
        if mine is None:
            return hits
        kept = []
        for other, distance in hits:
            theirs = info.get(other, {}).get("captured_at")
            if theirs is None or abs((theirs - mine).total_seconds()) <= self.settings.similar_max_gap_s:
                kept.append((other, distance))
        return kept
