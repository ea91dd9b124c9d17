"""The groups of a kind as pages: each group described once (keeper, reason, the bytes that removing
the others would free), sorted, sliced.

At 100,000 images and 10,000 groups, describing every group (the facts of 30,000 images read, a
keeper chosen per group) costs far more than a page may (300 ms), and the groups change one add at a
time. So :class:`GroupPages` keeps, per kind and rule set, the descriptions of the groups of the
generation it last saw (the follower's, gateway/duplicates/follower.py) and their orders; at a new
generation only the groups whose members changed are described again (the others are found by their
member set), and the facts of an image are read once and kept until the follower says it changed.
A page of an unchanged generation is a slice.

Orders: ``size`` (largest group first) or ``space`` (most bytes freed first), ties by the group's
smallest image id. Pages are numbered (``page``, ``page_size``) or follow a cursor (``after``: the
``next`` of the previous page, the sort key of its last group), which stays in place while adds
arrive: a group before the cursor is never listed again, one after it is not skipped because
others came or went in front of it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.bursts import stack_kind
from gateway.duplicates.decided import DecidedGroups
from gateway.duplicates.keeper import KeeperRules
from gateway.duplicates.sharpness import SharpnessStore
from gateway.image_facts import ImageFacts

ORDERS = ("size", "space")
#: Rule sets whose descriptions are kept per kind (a page asks with the configured one; a gallery
#: trying others should not make every page describe everything again).
VIEWS_KEPT = 4
#: Facts kept in the reply per member.
MEMBER_FACTS = ("file_name", "format", "width", "height", "bytes")


@dataclass(frozen=True)
class Summary:
    """One group, described."""

    members: frozenset[int]
    keeper: int
    rule: str | None
    reason: str
    bytes_freed: int
    stack: str | None = None

    @property
    def group_id(self) -> int:
        return min(self.members)

    def sort_key(self, order: str) -> tuple[int, int]:
        primary = len(self.members) if order == "size" else self.bytes_freed
        return -primary, self.group_id


@dataclass
class View:
    """The groups of one kind described under one rule set, at one generation."""

    generation: int
    summaries: dict[frozenset[int], Summary]
    #: images whose facts changed since: their groups are described again at the next generation
    stale: set[int] = field(default_factory=set)
    ordered: dict[str, list[Summary]] = field(default_factory=dict)
    keys: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def in_order(self, order: str) -> tuple[list[Summary], list[tuple[int, int]]]:
        if order not in self.ordered:
            self.ordered[order] = sorted(self.summaries.values(), key=lambda s: s.sort_key(order))
            self.keys[order] = [s.sort_key(order) for s in self.ordered[order]]
        return self.ordered[order], self.keys[order]


def parse_cursor(after: str) -> tuple[int, int]:
    """The sort key a ``next`` cursor names ("<size or bytes>:<group id>")."""
    try:
        primary, group_id = (int(part) for part in after.split(":"))
    except ValueError:
        raise ValueError(f"after: not a cursor of this route: {after!r}") from None
    return -primary, group_id


class GroupPages:
    """Described, ordered groups of every kind, kept per generation."""

    def __init__(self, facts: ImageFacts, sharpness: SharpnessStore) -> None:
        self.facts = facts
        self.sharpness = sharpness
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
        old = self._views.get(key)
        if old is not None and old.generation == generation:
            self._views.move_to_end(key)
            return old
        stale = old.stale if old is not None else set()
        found = [frozenset(members) for members in groups.groups()]
        missing = sorted({m for members in found for m in members} - self._info.keys())
        if missing:
            await run_in_threadpool(self._read, missing)
        summaries: dict[frozenset[int], Summary] = {}
        for members in found:
            kept = old.summaries.get(members) if old is not None else None
            if kept is None or not members.isdisjoint(stale):
                kept = self.describe(kind, members, rules)
            summaries[members] = kept
        view = self._views[key] = View(generation, summaries)
        self._views.move_to_end(key)
        while len(self._views) > VIEWS_KEPT:
            self._views.popitem(last=False)
        return view

    def _read(self, image_ids: list[int]) -> None:
        info = self.facts.info(image_ids)
        sharp = self.sharpness.of(image_ids)
        for image in image_ids:
            self._info[image] = {**info.get(image, {}), "sharpness": sharp.get(image)}

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
        "pages": (math.ceil(total / page_size) if page_size else 1),
        "next": f"{-last.sort_key(order)[0]}:{last.group_id}" if last is not None else None,
        "totals": {
            "groups": total,
            "images": sum(len(s.members) for s in ordered),
            "bytes_freed": sum(s.bytes_freed for s in ordered),
        },
    }
    return chosen, paging
