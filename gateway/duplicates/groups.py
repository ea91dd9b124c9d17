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
    re-splits only its own group."""

    def __init__(self) -> None:
        self.links: dict[int, dict[int, float]] = {}
        self.group_of: dict[int, int] = {}
        self.members: dict[int, set[int]] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.group_of)

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
        return self.group_of[image]

    def _new_group(self, members: set[int]) -> int:
        gid = self._next
        self._next += 1
        self.members[gid] = members
        for m in members:
            self.group_of[m] = gid
        return gid

    def _merge(self, a: int, b: int) -> None:
        if a == b:
            return
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        for m in self.members.pop(b):
            self.group_of[m] = a
            self.members[a].add(m)

    def remove(self, image: int) -> None:
        gid = self.group_of.pop(image, None)
        if gid is None:
            return
        for other in self.links.pop(image, {}):
            self.links[other].pop(image, None)
        rest = self.members.pop(gid)
        rest.discard(image)
        while rest:  # the group may fall apart: one new group per remaining component
            start = rest.pop()
            component, queue = {start}, [start]
            while queue:
                for other in self.links[queue.pop()]:
                    if other in rest:
                        rest.discard(other)
                        component.add(other)
                        queue.append(other)
            self._new_group(component)

    def groups(self, min_size: int = 2) -> list[set[int]]:
        return [m for m in self.members.values() if len(m) >= min_size]

    def distances_from(self, source: int) -> dict[int, tuple[float, bool]]:
        """Per member of ``source``'s group: (distance, linked directly). Members not linked to
        ``source`` get the shortest path length over links, an upper bound of their distance when
        the distance is a metric (Hamming, angle)."""
        best = {source: 0.0}
        heap = [(0.0, source)]
        while heap:
            d, node = heapq.heappop(heap)
            if d > best.get(node, math.inf):
                continue
            for other, step in self.links.get(node, {}).items():
                if d + step < best.get(other, math.inf):
                    best[other] = d + step
                    heapq.heappush(heap, (d + step, other))
        direct = self.links.get(source, {})
        return {m: (direct.get(m, d), m in direct or m == source) for m, d in best.items()}


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


def groups_from_links(images: list[int], links: list[Link]) -> LinkGroups:
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
