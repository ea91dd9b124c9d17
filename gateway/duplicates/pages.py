"""The groups of a kind as pages: each group described once (keeper, reason, the bytes that removing
the others would free), kept in order, sliced.

At 100,000 images and 10,000 groups, describing every group (the facts of 35,000 images read, a
keeper chosen per group) and sorting them costs far more than a page may (300 ms), and the groups
change one add at a time. So :class:`GroupPages` keeps, per kind and rule set, a :class:`View`: the
descriptions of the groups at the generation it last saw (the follower's,
gateway/duplicates/follower.py), their orders and totals. At a new generation the follower has said
which images changed; only the components holding them (and what their old groups held) are
described again, and their groups are taken out of and put back into the orders by bisection. The
facts of an image are read once and kept until the follower says it changed. A page of an
unchanged generation is a slice.

Orders: ``size`` (largest group first) or ``space`` (most bytes freed first), ties by the group's
smallest image id (its ``id``). Pages are numbered (``page``, ``page_size``) or follow a cursor
(``after``: the ``next`` of the previous page, the sort key of its last group), which stays in
place while adds arrive: a group before the cursor is not listed again, one after it is not skipped
because others came or went in front of it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.bursts import stack_kind
from gateway.duplicates.decided import DecidedGroups
from gateway.duplicates.keeper import KeeperRules

ORDERS = ("size", "space")
#: Rule sets whose views are kept per kind (a page asks with the configured one; a gallery trying
#: others should not make every page describe everything again).
VIEWS_KEPT = 4
#: Past this share of groups changed at once, the orders are sorted again rather than updated.
RESORT_SHARE = 0.125

Key = tuple[int, int]
#: Reads the facts of images (with their sharpness): image -> facts; unknown images absent.
ReadFacts = Callable[[list[int]], dict[int, dict[str, Any]]]


@dataclass(frozen=True)
class Summary:
    """One group, described."""

    members: frozenset[int]
    keeper: int
    rule: str | None
    reason: str
    bytes_freed: int
    stack: str | None = None
    group_id: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_id", min(self.members))

    def key(self, order: str) -> Key:
        return (-len(self.members) if order == "size" else -self.bytes_freed), self.group_id


@dataclass
class View:
    """The groups of one kind described under one rule set, at one generation."""

    generation: int
    by_image: dict[int, Summary] = field(default_factory=dict)
    count: int = 0
    images: int = 0
    bytes_freed: int = 0
    #: images changed since (the follower's news): their components are described again
    stale: set[int] = field(default_factory=set)
    ordered: dict[str, list[Summary]] = field(default_factory=dict)
    keys: dict[str, list[Key]] = field(default_factory=dict)

    def summaries(self) -> Iterable[Summary]:
        return {id(s): s for s in self.by_image.values()}.values()

    def put(self, summary: Summary) -> None:
        for m in summary.members:
            self.by_image[m] = summary
        self.count += 1
        self.images += len(summary.members)
        self.bytes_freed += summary.bytes_freed
        for order, ordered in self.ordered.items():
            key = summary.key(order)
            at = bisect_left(self.keys[order], key)
            self.keys[order].insert(at, key)
            ordered.insert(at, summary)

    def take(self, summary: Summary) -> None:
        for m in summary.members:
            if self.by_image.get(m) is summary:
                del self.by_image[m]
        self.count -= 1
        self.images -= len(summary.members)
        self.bytes_freed -= summary.bytes_freed
        for order, ordered in self.ordered.items():
            at = bisect_left(self.keys[order], summary.key(order))
            assert ordered[at] is summary
            del ordered[at]
            del self.keys[order][at]

    def in_order(self, order: str) -> tuple[list[Summary], list[Key]]:
        if order not in self.ordered:
            ordered = sorted(self.summaries(), key=lambda s: s.key(order))
            self.ordered[order], self.keys[order] = ordered, [s.key(order) for s in ordered]
        return self.ordered[order], self.keys[order]


def parse_cursor(after: str) -> Key:
    """The sort key a ``next`` cursor names ("<size or bytes>:<group id>")."""
    try:
        primary, group_id = (int(part) for part in after.split(":"))
    except ValueError:
        raise ValueError(f"after: not a cursor of this route: {after!r}") from None
    return -primary, group_id


class GroupPages:
    """Described, ordered groups of every kind, kept per generation."""

    def __init__(self, read: ReadFacts) -> None:
        self.read = read
        self._info: dict[int, dict[str, Any]] = {}
        self._views: OrderedDict[tuple[str, KeeperRules], View] = OrderedDict()

    def changed(self, kind: str, images: set[int] | None) -> None:
        """The follower's news (gateway/duplicates/follower.py): ``images`` of ``kind`` changed
        (None: every one)."""
        if images is None:
            self._views = OrderedDict((key, v) for key, v in self._views.items() if key[0] != kind)
            return
        for image in images:
            self._info.pop(image, None)
        for (of_kind, _), view in self._views.items():
            if of_kind == kind:
                view.stale |= images

    async def view(self, kind: str, groups: DecidedGroups, generation: int, rules: KeeperRules) -> View:
        """The described groups of ``kind`` at ``generation`` (``groups`` held unchanged)."""
        key = (kind, rules)
        view = self._views.get(key)
        if view is None:
            found = [frozenset(g) for g in groups.groups()]
            view = View(generation)
            await self._facts_of(found)
            for members in found:
                view.put(self.describe(kind, members, rules))
        elif view.generation != generation:
            await self._update(view, kind, groups, rules)
            view.generation = generation
        self._views[key] = view
        self._views.move_to_end(key)
        while len(self._views) > VIEWS_KEPT:
            self._views.popitem(last=False)
        return view

    async def _update(self, view: View, kind: str, groups: DecidedGroups, rules: KeeperRules) -> None:
        """Bring ``view`` to the groups now: the components of the changed images, and of what their
        old groups held, described again."""
        seeds = set(view.stale)
        for image in view.stale:
            old = view.by_image.get(image)
            if old is not None:
                seeds |= old.members
        view.stale = set()
        components = {groups.group_of[s] for s in seeds if s in groups.group_of}
        affected = seeds.union(*(groups.members[gid] for gid in components))
        dropped = {id(s): s for m in affected if (s := view.by_image.get(m)) is not None}.values()
        found = [frozenset(g) for gid in components for g in groups.groups_of(gid)]
        await self._facts_of(found)
        if len(dropped) + len(found) > RESORT_SHARE * max(view.count, 1):
            view.ordered, view.keys = {}, {}  # sorted again when asked
        for summary in list(dropped):
            view.take(summary)
        for members in found:
            view.put(self.describe(kind, members, rules))

    async def _facts_of(self, found: list[frozenset[int]]) -> None:
        missing = sorted({m for members in found for m in members} - self._info.keys())
        if missing:
            read = await run_in_threadpool(self.read, missing)
            for image in missing:
                self._info[image] = read.get(image, {})

    def info(self, image: int) -> dict[str, Any]:
        return self._info.get(image, {})

    def describe(self, kind: str, members: frozenset[int], rules: KeeperRules) -> Summary:
        info = {m: self.info(m) for m in members}
        choice = rules.choose(members, info)
        freed = sum(info[m].get("bytes") or 0 for m in members if m != choice.keeper)
        stack = stack_kind(members, info) if kind == "bursts" else None
        return Summary(members, choice.keeper, choice.rule, choice.reason, freed, stack)


def page_of(
    view: View, order: str, page: int, page_size: int | None, after: str | None
) -> tuple[list[Summary], dict[str, Any]]:
    """The groups of one page and what the reply says about paging."""
    ordered, keys = view.in_order(order)
    total = len(ordered)
    if after is not None:
        start = bisect_right(keys, parse_cursor(after))
        number = None
    else:
        start = (page - 1) * page_size if page_size else 0
        number = page
    end = total if page_size is None else min(total, start + page_size)
    chosen = ordered[start:end]
    last = chosen[-1] if chosen and end < total else None
    paging = {
        "order": order,
        "page": number,
        "page_size": page_size,
        "pages": math.ceil(total / page_size) if page_size else 1,
        "next": f"{-last.key(order)[0]}:{last.group_id}" if last is not None else None,
        "totals": {"groups": view.count, "images": view.images, "bytes_freed": view.bytes_freed},
    }
    return chosen, paging
