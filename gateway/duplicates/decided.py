"""A person's decisions about duplicate groups, and the groups they make of the links.

Three decisions, each over a set of image ids, for one kind of group or every kind:

- ``not_duplicates``: no two of the images are ever in one group, neither linked directly nor
  through other images;
- ``duplicates``: the images are one group (joined as if linked, whatever the links say);
- ``resolved``: the images were kept together when their group was resolved
  (``/duplicate_groups/resolve``): a group made of them alone is not shown again; one that a new
  image joins is.

Decisions never change the links: the groups are computed from the links *and* the decisions, so a
rebuild (which rewrites every link), the re-add of an image (the same id linked anew) and a gateway
started afresh all come back to the same groups, and undoing a decision restores what the links
say. Each link-connected component (with the decided joins) is one group unless a
``not_duplicates`` decision has two of its images in it; then the component is split
deterministically: decided joins first, then links nearest first (ties by ids), each union refused
where the two sides hold different images of one ``not_duplicates`` decision (the exposure rule of
gateway/duplicates/exposure.py, with decisions for exposures). The split depends on the component
alone, so groups updated one change at a time equal groups loaded whole.

:class:`DecidedGroups` is :class:`~gateway.duplicates.groups.LinkGroups` with the decisions; plain
Python, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.duplicates.groups import LinkGroups

DECISIONS = ("not_duplicates", "duplicates", "resolved")


@dataclass(frozen=True)
class Decision:
    id: int
    decision: str
    #: The kind of groups it applies to; None: every kind.
    kind: str | None
    image_ids: tuple[int, ...]
    created_at: datetime | None = None
    #: What a resolution did (removed images, what the keeper inherits, per-image outcomes).
    detail: dict[str, Any] | None = field(default=None, compare=False)

    def applies_to(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "decision": self.decision,
            "kind": self.kind,
            "image_ids": list(self.image_ids),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            **({"detail": self.detail} if self.detail else {}),
        }


class _Joins:
    """Union-find over image ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, image: int) -> int:
        self.parent.setdefault(image, image)
        root = image
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[image] != root:
            self.parent[image], image = root, self.parent[image]
        return root

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(b)] = self.find(a)


def conflicts(existing: Iterable[Decision], new: Decision, kinds: Iterable[str]) -> list[int]:
    """Ids of the decisions ``new`` contradicts in any of ``kinds``: a ``not_duplicates`` with two
    images that ``duplicates`` decisions (chained) make one group, either one being ``new``."""
    found: set[int] = set()
    for kind in kinds:
        if not new.applies_to(kind):
            continue
        mine = [d for d in existing if d.applies_to(kind) and d.decision != "resolved"] + [new]
        joins, joined_by = _Joins(), {}
        for d in mine:
            if d.decision == "duplicates":
                for a, b in zip(d.image_ids, d.image_ids[1:], strict=False):
                    joins.join(a, b)
        for d in mine:
            if d.decision == "duplicates":
                joined_by.setdefault(joins.find(d.image_ids[0]), set()).add(d.id)
        for d in mine:
            if d.decision != "not_duplicates":
                continue
            roots = [joins.find(i) for i in d.image_ids]
            clashing = {r for r in roots if roots.count(r) > 1}
            if not clashing:
                continue
            if d is new:
                found.update(i for r in clashing for i in joined_by.get(r, ()) if i != new.id)
            elif any(new.id in joined_by.get(r, ()) for r in clashing):
                found.add(d.id)
    return sorted(found)


class DecidedGroups(LinkGroups):
    """The groups of one kind: link-connected components with the decisions applied."""

    def __init__(self) -> None:
        super().__init__()
        #: image -> the not_duplicates decisions naming it
        self.apart: dict[int, set[int]] = {}
        #: image -> the resolutions that kept it; resolution -> the images it kept
        self.kept_by: dict[int, set[int]] = {}
        self.kept: dict[int, frozenset[int]] = {}
        #: component id -> its groups, for components a not_duplicates decision splits
        self._parts: dict[int, list[set[int]]] = {}
        #: components of two images or more (most of a collection's are single images)
        self._multi: set[int] = set()
        self.decisions: dict[int, Decision] = {}

    def _touch(self, gid: int) -> None:
        self._parts.pop(gid, None)
        if len(self.members.get(gid, ())) >= 2:
            self._multi.add(gid)
        else:
            self._multi.discard(gid)

    def apply_decisions(self, decisions: Iterable[Decision]) -> set[int]:
        """Hold these decisions (those of this kind) from now on; returns the images whose groups
        may have changed."""
        held = {d.id: d for d in decisions}
        joins: dict[int, frozenset[int]] = {}
        apart: dict[int, set[int]] = {}
        kept_by: dict[int, set[int]] = {}
        for d in held.values():
            if d.decision == "duplicates":
                joins[d.id] = frozenset(d.image_ids)
            elif d.decision == "not_duplicates":
                for i in d.image_ids:
                    apart.setdefault(i, set()).add(d.id)
            else:
                for i in d.image_ids:
                    kept_by.setdefault(i, set()).add(d.id)
        changed = {i for i in apart.keys() | self.apart.keys() if apart.get(i) != self.apart.get(i)}
        changed |= {i for i in kept_by.keys() | self.kept_by.keys() if kept_by.get(i) != self.kept_by.get(i)}
        for image in changed:
            if image in self.group_of:
                self._touch(self.group_of[image])
        self.apart, self.kept_by, self.decisions = apart, kept_by, held
        self.kept = {d.id: frozenset(d.image_ids) for d in held.values() if d.decision == "resolved"}
        return changed | self.set_joins(joins)

    def _split(self, gid: int) -> list[set[int]]:
        """The groups of a component holding images of a not_duplicates decision."""
        cached = self._parts.get(gid)
        if cached is not None:
            return cached
        members = self.members[gid]
        joins = _Joins()
        labels: dict[int, dict[int, int]] = {m: {d: m for d in self.apart.get(m, ())} for m in members}
        edges: list[tuple[int, float, int, int]] = []
        for j in {j for m in members for j in self.joined_by.get(m, ())}:
            present = sorted(i for i in self.joins[j] if i in members)
            edges += [(0, 0.0, a, b) for a, b in itertools.pairwise(present)]
        for a in members:
            for b, distance in self.links.get(a, {}).items():
                if a < b and b in members:
                    edges.append((1, distance, a, b))
        for _, _, a, b in sorted(edges):
            ra, rb = joins.find(a), joins.find(b)
            if ra == rb:
                continue
            mine, theirs = labels[ra], labels[rb]
            if any(theirs.get(d, image) != image for d, image in mine.items()):
                continue  # the two sides hold different images of one not_duplicates decision
            joins.join(ra, rb)
            mine.update(theirs)
        parts: dict[int, set[int]] = {}
        for m in members:
            parts.setdefault(joins.find(m), set()).add(m)
        self._parts[gid] = result = sorted(parts.values(), key=min)
        return result

    def _hidden(self, members: set[int]) -> bool:
        """A group a resolution kept together, nothing else in it."""
        first = next(iter(members))
        return any(members <= self.kept[r] for r in self.kept_by.get(first, ()))

    def groups(self, min_size: int = 2) -> list[set[int]]:
        """The groups to show: components, split by not_duplicates decisions, but those a
        resolution kept together."""
        return [p for gid in self._multi for p in self.groups_of(gid) if len(p) >= min_size]

    def groups_of(self, gid: int) -> list[set[int]]:
        """The groups of two images or more to show of component ``gid``."""
        members = self.members[gid]
        parts = self._split(gid) if any(i in self.apart for i in members) else [members]
        return [p for p in parts if len(p) >= 2 and not (self.kept_by and self._hidden(p))]

    def group_with(self, image: int) -> set[int]:
        """The group ``image`` is in (just itself when it is in none)."""
        gid = self.group_of.get(image)
        if gid is None:
            return {image}
        if any(i in self.apart for i in self.members[gid]):
            return next(p for p in self._split(gid) if image in p)
        return self.members[gid]

    def distances_from(self, source: int, within: set[int] | None = None) -> dict[int, tuple[float, bool]]:
        return super().distances_from(source, within if within is not None else self.group_with(source))
