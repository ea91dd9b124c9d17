"""Duplicate groups in memory: connected components of links between images, kept up to date one
image at a time, and the arithmetic of links (plain Python, no I/O)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

#: A link between two images and its distance (the smaller id first where it is stored).
Link = tuple[int, int, float]


class LinkGroups:
    """Groups = connected components of links between images (each with a distance), kept up to
    date one image at a time: linking merges groups (the smaller into the larger), removing an image
    re-splits only its own group. ``joins`` (a person's "these are duplicates",
    gateway/duplicates/decided.py) connect their recorded images as links do, at no distance."""

    def __init__(self) -> None:
        self.links: dict[int, dict[int, float]] = {}
        #: Joins decided by a person: join id -> its images (any ids: an image not recorded yet
        #: joins when it comes); image -> the joins naming it.
        self.joins: dict[int, frozenset[int]] = {}
        self.joined_by: dict[int, set[int]] = {}
        self.group_of: dict[int, int] = {}
        self.members: dict[int, set[int]] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.group_of)

    def _touch(self, gid: int) -> None:
        """Group ``gid`` was made, grew or went (for what caches something per group)."""

    def joined(self, image: int) -> set[int]:
        """The recorded images a join puts with ``image``."""
        if image not in self.joined_by:
            return set()
        found = {o for j in self.joined_by[image] for o in self.joins[j] if o in self.group_of}
        return found - {image}

    def add(self, image: int, links: Iterable[tuple[int, float]]) -> int:
        """Record ``image`` with its links to images already recorded; returns its group id."""
        mine = self.links.setdefault(image, {})
        if image not in self.group_of:
            self._new_group({image})
        for other, distance in links:
            if other == image or other not in self.group_of:
                continue
            mine[other] = self.links[other][image] = float(distance)
            self._merge(self.group_of[image], self.group_of[other])
        for other in self.joined(image):
            self._merge(self.group_of[image], self.group_of[other])
        return self.group_of[image]

    def _new_group(self, members: set[int]) -> int:
        gid = self._next
        self._next += 1
        self.members[gid] = members
        for m in members:
            self.group_of[m] = gid
        self._touch(gid)
        return gid

    def _merge(self, a: int, b: int) -> None:
        if a == b:
            return
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        for m in self.members.pop(b):
            self.group_of[m] = a
            self.members[a].add(m)
        self._touch(a)
        self._touch(b)

    def remove(self, image: int) -> None:
        gid = self.group_of.pop(image, None)
        if gid is None:
            return
        for other in self.links.pop(image, {}):
            self.links[other].pop(image, None)
        self.members[gid].discard(image)
        self._resplit(gid)

    def _resplit(self, gid: int) -> None:
        """Group ``gid`` as the connected components its members now make: one new group each."""
        rest = self.members.pop(gid)
        self._touch(gid)
        while rest:
            start = rest.pop()
            component, queue, used = {start}, [start], set()
            while queue:
                node = queue.pop()
                others = list(self.links.get(node, {}))
                for j in self.joined_by.get(node, ()):
                    if j not in used:  # each join's images are met once
                        used.add(j)
                        others += self.joins[j]
                for other in others:
                    if other in rest:
                        rest.discard(other)
                        component.add(other)
                        queue.append(other)
            self._new_group(component)

    def set_joins(self, joins: dict[int, frozenset[int]]) -> set[int]:
        """Replace the decided joins; the groups follow (those that lost a join re-split). Returns
        the images whose joins changed."""
        old, self.joins = self.joins, joins
        changed = {i for j in old.keys() ^ joins.keys() for i in (old.get(j) or joins[j])}
        changed |= {i for j in old.keys() & joins.keys() if old[j] != joins[j] for i in old[j] ^ joins[j]}
        self.joined_by = {}
        for j, images in joins.items():
            for i in images:
                self.joined_by.setdefault(i, set()).add(j)
        lost = {i for j, images in old.items() if joins.get(j) != images for i in images}
        for gid in {self.group_of[i] for i in lost if i in self.group_of}:
            if gid in self.members:
                self._resplit(gid)
        for image in changed:
            if image in self.group_of:
                self._touch(self.group_of[image])
                for other in self.joined(image):
                    self._merge(self.group_of[image], self.group_of[other])
        return changed

    def groups(self, min_size: int = 2) -> list[set[int]]:
        return [m for m in self.members.values() if len(m) >= min_size]

    def distances_from(self, source: int, within: set[int] | None = None) -> dict[int, tuple[float, bool]]:
        """Per member of ``source``'s group (or of ``within``): (distance, linked directly). Members
        not linked to ``source`` get the shortest path length over links (a decided join counts 0),
        an upper bound of their distance when the distance is a metric (Hamming, angle)."""
        best = {source: 0.0}
        heap = [(0.0, source)]
        while heap:
            d, node = heapq.heappop(heap)
            if d > best.get(node, math.inf):
                continue
            steps = list(self.links.get(node, {}).items())
            steps += [(o, 0.0) for o in self.joined(node)]
            for other, step in steps:
                if within is not None and other not in within:
                    continue
                if d + step < best.get(other, math.inf):
                    best[other] = d + step
                    heapq.heappush(heap, (d + step, other))
        direct = self.links.get(source, {})
        joined = self.joined(source)
        return {m: (direct.get(m, d), m in direct or m in joined or m == source) for m, d in best.items()}


def union_of_links(found: list[Link], recorded: list[Link], prefer_found: bool = False) -> list[Link]:
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


def links_by_image(links: list[Link]) -> dict[int, list[tuple[int, float]]]:
    """Per image, the other end and distance of each of its links."""
    by_image: dict[int, list[tuple[int, float]]] = {}
    for a, b, d in links:
        by_image.setdefault(a, []).append((b, d))
        by_image.setdefault(b, []).append((a, d))
    return by_image


def add_linked(groups: LinkGroups, image: int, links: list[tuple[int, float]]) -> None:
    """Record ``image`` with its links, and the images at their other ends that ``groups`` does not
    hold yet (added images whose own change is not applied yet, or that have no change logged:
    a whole load holds them too)."""
    for other, _ in links:
        if other not in groups.group_of:
            groups.add(other, [])
    groups.add(image, links)
