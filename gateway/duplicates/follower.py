"""The groups of each kind in memory, kept as the link store has them.

Loaded whole at the first request, then brought up to date at each request from the store's change
log (:meth:`gateway.duplicates.links.LinkStore.changes`): the adds and deletes of every gateway
replica sharing the catalog, this one's included, applied one image at a time; a rebuild, or a log
that no longer reaches back to this copy's generation, reloads them whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.groups import LinkGroups, add_linked, groups_from_links, links_by_image
from gateway.duplicates.links import LinkChanges, LinkStore


@dataclass
class KindGroups:
    """One kind's groups in memory and the generation of links they reflect."""

    groups: LinkGroups
    generation: int


class GroupFollower:
    """The groups of every kind, following ``links``."""

    def __init__(self, links: LinkStore) -> None:
        self.links = links
        self._groups: dict[str, KindGroups] = {}
        #: Held while groups are brought up to date and read: they change only under it.
        self._lock = asyncio.Lock()
        #: How the groups were brought up to date: reloaded ``whole``, or by applying ``changes``.
        self.refreshes = {"whole": 0, "changes": 0}

    @asynccontextmanager
    async def current(self, kind: str) -> AsyncIterator[LinkGroups]:
        """The groups of ``kind`` as the store has them now, held unchanged while the caller reads
        them (one reply is one state of the groups)."""
        async with self._lock:
            yield await self._bring_up_to_date(kind)

    async def _bring_up_to_date(self, kind: str) -> LinkGroups:
        """The changes logged since this copy's generation applied (one query when there are none),
        else the groups loaded whole."""
        cached = self._groups.get(kind)
        if cached is not None:
            logged = await run_in_threadpool(self.links.changes, kind, cached.generation)
            if await self._apply(kind, cached, logged):
                return cached.groups
        snapshot = await run_in_threadpool(self.links.snapshot, kind)
        groups = groups_from_links(snapshot.images, snapshot.links)
        self._groups[kind] = KindGroups(groups, snapshot.generation)
        self.refreshes["whole"] += 1
        return groups

    async def _apply(self, kind: str, cached: KindGroups, logged: LinkChanges) -> bool:
        """Apply the logged changes to ``cached``; False when only a whole reload can bring it up to
        date: every link was replaced (a rebuild), the log no longer reaches back to the copy's
        generation, or the store is behind it (restored from a backup)."""
        changes = logged.changes
        if not changes:
            return logged.generation == cached.generation
        if changes[0].generation != cached.generation + 1 or any(c.change == "rebuild" for c in changes):
            return False
        added = sorted({c.image_id for c in changes if c.change == "add" and c.image_id is not None})
        links = await run_in_threadpool(self.links.touching, kind, added) if added else []
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
        self.refreshes["changes"] += 1
        return True
