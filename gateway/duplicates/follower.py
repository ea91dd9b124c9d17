"""The groups of each kind in memory, kept as the link store has them.

Loaded whole at the first request, then brought up to date at each request from the store's change
log (:meth:`gateway.duplicates.links.LinkStore.changes`): the adds and deletes of every gateway
replica sharing the catalog, this one's included, applied one image at a time; a decision about
the groups (a ``decision`` change) makes them read the kind's decisions again and re-split only the
groups it touches (gateway/duplicates/decided.py); a rebuild, or a log that no longer reaches back to
this copy's generation, reloads them whole. What caches something per group or image is told which
images changed (:meth:`GroupFollower.listen`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.decided import DecidedGroups
from gateway.duplicates.decisions import DecisionStore
from gateway.duplicates.groups import add_linked, links_by_image
from gateway.duplicates.links import LinkChanges, LinkStore

#: Told, per kind, the images whose groups changed (None: every image, the groups were reloaded).
ChangeListener = Callable[[str, "set[int] | None"], None]


@dataclass
class KindGroups:
    """One kind's groups in memory and the generation of links they reflect."""

    groups: DecidedGroups
    generation: int


class GroupFollower:
    """The groups of every kind, following ``links``."""

    def __init__(self, links: LinkStore, decisions: DecisionStore) -> None:
        self.links = links
        self.decisions = decisions
        self._listeners: list[ChangeListener] = []
        self._groups: dict[str, KindGroups] = {}
        #: Held while groups are brought up to date and read: they change only under it.
        self._lock = asyncio.Lock()
        #: How the groups were brought up to date: reloaded ``whole``, or by applying ``changes``.
        self.refreshes = {"whole": 0, "changes": 0}

    def listen(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def _tell(self, kind: str, images: set[int] | None) -> None:
        for listener in self._listeners:
            listener(kind, images)

    def generation(self, kind: str) -> int:
        """The generation the groups of ``kind`` reflect (-1 before their first load)."""
        cached = self._groups.get(kind)
        return cached.generation if cached is not None else -1

    @asynccontextmanager
    async def current(self, kind: str) -> AsyncIterator[DecidedGroups]:
        """The groups of ``kind`` as the store has them now, held unchanged while the caller reads
        them (one reply is one state of the groups)."""
        async with self._lock:
            yield await self._bring_up_to_date(kind)

    async def _bring_up_to_date(self, kind: str) -> DecidedGroups:
        """The changes logged since this copy's generation applied (one query when there are none),
        else the groups loaded whole."""
        cached = self._groups.get(kind)
        if cached is not None:
            logged = await run_in_threadpool(self.links.changes, kind, cached.generation)
            if await self._apply(kind, cached, logged):
                return cached.groups
        snapshot = await run_in_threadpool(self.links.snapshot, kind)
        # read after the generation: a decision newer than it is applied again with its change
        decisions = await run_in_threadpool(self.decisions.applying_to, kind)
        groups = DecidedGroups()
        groups.apply_decisions(decisions)
        by_image = links_by_image(snapshot.links)
        # every added image, and every image a link names (``ambience import`` wrote it past the
        # gateway: it is known here by its links only)
        for image in sorted({*snapshot.images, *by_image}):
            groups.add(image, by_image.get(image, []))
        self._groups[kind] = KindGroups(groups, snapshot.generation)
        self.refreshes["whole"] += 1
        self._tell(kind, None)
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
        touched: set[int] = set()
        if any(c.change == "decision" for c in changes):
            # the decisions as they are now: those logged later are applied again, to the same end
            decisions = await run_in_threadpool(self.decisions.applying_to, kind)
            touched |= cached.groups.apply_decisions(decisions)
        added = sorted({c.image_id for c in changes if c.change == "add" and c.image_id is not None})
        links = await run_in_threadpool(self.links.touching, kind, added) if added else []
        by_image = links_by_image(links)
        # The links are read now, so they may be newer than a change (a later delete has dropped
        # them already): the changes after it, applied in the next request, settle the same state.
        for change in changes:
            if change.image_id is None:
                continue
            touched.add(change.image_id)
            if change.change == "remove":
                cached.groups.remove(change.image_id)
            else:
                add_linked(cached.groups, change.image_id, by_image.get(change.image_id, []))
        cached.generation = changes[-1].generation
        self.refreshes["changes"] += 1
        self._tell(kind, touched)
        return True
