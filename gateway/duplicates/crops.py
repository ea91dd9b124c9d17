"""Crops of smooth pictures, found by aligning thumbnails.

A crop keeps its source's colours, so the source is among the upload's colour-nearest stored images
(the color service's by-id search); the thumbnails the gateway keeps (gateway/thumbnails.py) are
then aligned (gateway/duplicates/alignment.py): a correlation of ``COPY_ALIGNMENT_MIN_CORRELATION``
or more, either one being the part, is a copy that local features cannot verify (too few keypoints).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from gateway import thumbnails
from gateway.duplicates.alignment import grey_thumbnail, part_correlation
from gateway.duplicates.groups import Link
from gateway.proxy import ServiceClients
from gateway.settings import UPSTREAMS, GatewaySettings
from services.common.postgres.database import SqlRunner

log = logging.getLogger("ambience.gateway")


class AlignedCrops:
    """Crops found by thumbnail alignment, with the color service's neighbours as candidates."""

    def __init__(
        self, settings: GatewaySettings, clients: ServiceClients, enabled: set[str], db: SqlRunner
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.enabled = enabled
        self.db = db

    def active(self) -> bool:
        """Whether crops are looked for this way (candidates wanted, the color service enabled)."""
        return self.settings.copy_alignment_candidates > 0 and "color" in self.enabled

    async def of(self, image_id: int, linked: set[int]) -> list[tuple[int, float]]:
        """The ``COPY_ALIGNMENT_CANDIDATES`` colour-nearest stored images (but those in ``linked``)
        whose thumbnail aligns with ``image_id``'s: linked at distance 0, as a verified crop. Needs
        both thumbnails (the add makes its own before the links: gateway/after_add.py)."""
        wanted = self.settings.copy_alignment_candidates
        if not self.active():
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
        return await run_in_threadpool(self._align, image_id, candidates[:wanted])

    def _align(self, image_id: int, candidates: list[int]) -> list[tuple[int, float]]:
        mine = thumbnails.get(self.db, image_id)
        if mine is None:
            return []
        upload = grey_thumbnail(mine.webp)
        found = []
        for other in candidates:
            theirs = thumbnails.get(self.db, other)
            if theirs is None:
                continue
            aligned = part_correlation(
                upload, grey_thumbnail(theirs.webp), self.settings.copy_alignment_min_area
            )
            if aligned.correlation >= self.settings.copy_alignment_min_correlation:
                found.append((other, 0.0))
        return found

    async def among_all(self, progress: Callable[[int, int], None]) -> list[Link]:
        """The alignment of every image that has a thumbnail (the crops among images the add path
        never saw: imported, their previews made since); ``progress(done, total)`` after each."""
        ids = await run_in_threadpool(thumbnails.ids, self.db)
        pairs: set[tuple[int, int]] = set()
        for done, image_id in enumerate(ids, 1):
            for other, _ in await self.of(image_id, set()):
                pairs.add((min(image_id, other), max(image_id, other)))
            progress(done, len(ids))
        return [(a, b, 0.0) for a, b in sorted(pairs)]
