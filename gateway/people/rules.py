"""The rules that group the stored faces into persons, one face at a time, with the user's decisions
kept.

Plain numpy + FAISS, no HTTP and no database: the gateway persists the records of
gateway/people/faces.py (:class:`Face`, :class:`Person`, :class:`Rejection`) and hands them back
with the descriptors
(from the faces service's ``/faces_descriptors``) to rebuild a :class:`PeopleGrouping`; every
operation returns the :class:`Changes` to persist.

The grouping is incremental, as Immich's (a variant of DBSCAN; docs/faces.md):

- A face joins the person of its nearest *labelled* neighbour within ``max_distance`` (Euclidean,
  over dlib's 128-d descriptors) that it has not been told it is not.
- A face without any labelled neighbour becomes a new person when it is a *core point*: at least
  ``min_faces`` faces (itself included) lie within ``max_distance``. Otherwise it waits,
  unassigned; its neighbours are retried as soon as it is placed, and :meth:`retry_unassigned` is
  the pass over every waiting face (a stranger in the background stays unassigned).
- A core face whose neighbours belong to several automatic persons joins them into one, as DBSCAN
  connects core points: which core faces make a person does not depend on the order the faces
  came in (a face at the edge of two people may, as in DBSCAN).
- :meth:`regroup` is the full grouping after a bulk import: every face not held by a decision is
  released and placed again, densest first.

Decisions a person makes are data, and every grouping, incremental or full, honours them:

- a face moved to a person is *pinned* there: the grouping never moves it;
- "not this person" is a :class:`Rejection` (a cannot-link between a face and a person): the face
  never joins that person again, by assignment or by merge;
- merging two people pins the faces of both into the one kept (the other is recorded as merged
  into it), so no grouping can split them again;
- a person named or hidden is *kept*: a full grouping leaves its faces where they are (it only
  regroups the automatic persons and the unassigned faces), and automatic persons never absorb
  it (they may join it).

Neighbour queries run on an exact FAISS index (IndexFlatL2 with ids): about 10 ms per face added at
100,000 faces on one core; a regrouping asks FAISS once per face, in batches (bench/faces_bench.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from gateway.people.faces import (
    ID_SHIFT,
    NO_PERSON,
    Changes,
    Face,
    FaceKey,
    FaceTable,
    Person,
    Rejection,
    key_of,
)


class GroupingRules(FaceTable):
    """The grouping rules over the face table: add, remove, the retry pass, the full regrouping."""

    def _is_core(self, row: int, within: int | None = None) -> bool:
        """At least min_faces faces (itself included) within max_distance."""
        if within is None:
            within = int((self._neighbours(np.asarray([row]))[1] >= 0).sum())
        return within + 1 >= self.settings.min_faces

    # -- the rule ----------------------------------------------------------------------------------------

    def _place(self, row: int, changes: Changes) -> bool:
        """Assign an unassigned face by the rule (module docstring); its waiting neighbours are
        retried in turn. True when it was placed."""
        queue = deque([row])
        placed_first = False
        while queue:
            current = queue.popleft()
            if self.person[current] != NO_PERSON:
                continue
            squared, found = self._neighbours(np.asarray([current]))
            order = np.argsort(squared[0], kind="stable")
            near = [int(found[0, j]) for j in order if found[0, j] >= 0]
            if not self._assign_by_neighbours(current, near, changes):
                continue
            placed_first |= current == row
            queue.extend(r for r in near if self.person[r] == NO_PERSON)
        return placed_first

    def _assign_by_neighbours(self, row: int, near: list[int], changes: Changes) -> bool:
        rejected = self.rejected.get(int(self.ids[row]), set())
        neighbours_labelled = [r for r in near if self.person[r] != NO_PERSON]
        labelled = [r for r in neighbours_labelled if int(self.person[r]) not in rejected]
        core = self._is_core(row, len(near))
        if labelled:
            target = int(self.person[labelled[0]])
            self._set_person(row, target, changes)
            if core:
                self._join_connected(row, labelled, changes)
            return True
        # A face next to people it was told it is not waits for the person (or the person's
        # decision) it belongs to, rather than founding a rival of theirs.
        if core and not neighbours_labelled:
            self._set_person(row, self._new_person(changes), changes)
            return True
        return False

    def _join_connected(self, row: int, labelled: list[int], changes: Changes) -> None:
        """A core face next to core faces of other persons connects them (DBSCAN): automatic
        persons join; two kept persons never do, nor persons a face of either rejected."""
        target = int(self.person[row])
        for other_row in labelled:
            other = int(self.person[other_row])
            if other in (target, NO_PERSON) or not self._is_core(other_row):
                continue
            if self.kept(other) and self.kept(target):
                continue
            keep, absorbed = (other, target) if self.kept(other) else (target, other)
            if self._rejects(absorbed, keep) or self._rejects(keep, absorbed):
                continue
            self._move_all(absorbed, keep, changes)
            target = keep

    def _rejects(self, person: int, other: int) -> bool:
        """Whether a face of ``person`` was told it is not ``other``."""
        members = self.ids[self.person == person]
        return any(other in self.rejected.get(int(i), ()) for i in members)

    # -- writes ------------------------------------------------------------------------------------------

    def _set_person(self, row: int, person: int, changes: Changes, pinned: bool | None = None) -> None:
        self.person[row] = person
        if pinned is not None:
            self.pinned[row] = pinned
        face = self.face(row)
        changes.faces[face.key] = face

    def _new_person(self, changes: Changes) -> int:
        person = Person(self.next_person)
        self.next_person += 1
        self.people[person.id] = person
        changes.people[person.id] = replace(person)
        return person.id

    def _move_all(self, source: int, target: int, changes: Changes) -> None:
        for row in np.nonzero(self.person == source)[0]:
            self._set_person(int(row), target, changes)
        self._drop_person(source, changes)

    def _drop_person(self, person_id: int, changes: Changes) -> None:
        self.people.pop(person_id, None)
        changes.people.pop(person_id, None)
        changes.removed_people.add(person_id)

    def _drop_empty_automatic(self, changes: Changes) -> None:
        held = set(np.unique(self.person).tolist())
        kept = self.kept_people()
        for person_id in list(self.people):
            person = self.people[person_id]
            if person_id not in held and person.merged_into is None and person_id not in kept:
                self._drop_person(person_id, changes)

    # -- adding and removing faces ------------------------------------------------------------------------

    def add(self, faces: list[FaceKey], descriptors: np.ndarray) -> Changes:
        """New faces (e.g. of an image just added), grouped one by one in order."""
        changes = Changes()
        rows = self._insert([Face(*key) for key in faces], descriptors)
        for row in rows.tolist():
            if not self._place(row, changes):
                changes.faces.setdefault(self.face(row).key, self.face(row))
        return changes

    def remove_images(self, image_ids: Iterable[int]) -> Changes:
        """Forget the faces of deleted images (and their rejections); automatic persons left
        without faces go, kept ones stay."""
        changes = Changes()
        wanted = np.asarray(sorted(set(image_ids)), np.int64)
        gone = np.isin(self.ids >> ID_SHIFT, wanted)
        if not gone.any():
            return changes
        for face_id in self.ids[gone].tolist():
            changes.removed_faces.add(key_of(face_id))
            for person in self.rejected.pop(face_id, set()):
                changes.rejections_removed.add(Rejection(*key_of(face_id), person))
        self.index.remove_ids(self.ids[gone])
        keep = ~gone
        self.ids, self.person, self.pinned = self.ids[keep], self.person[keep], self.pinned[keep]
        self.row_of = {face_id: row for row, face_id in enumerate(self.ids.tolist())}
        self._sorted = None
        self._drop_empty_automatic(changes)
        return changes

    def retry_unassigned(self) -> Changes:
        """The pass over every waiting face, densest first, until nothing more is placed."""
        changes = Changes()
        with self._pass():
            self._retry(changes)
        return changes

    @contextmanager
    def _pass(self) -> Iterator[None]:
        """A pass over the stored faces: neighbour answers are kept until it ends."""
        outer = self._pass_cache is not None
        if not outer:
            self._pass_cache = {}
        try:
            yield
        finally:
            if not outer:
                self._pass_cache = None

    def _retry(self, changes: Changes) -> None:
        while True:
            placed = 0
            for row in self._densest_first(np.nonzero(self.person == NO_PERSON)[0]):
                if self.person[row] == NO_PERSON:
                    placed += self._place(row, changes)
            if not placed:
                return

    def _densest_first(self, rows: np.ndarray, batch: int = 1024) -> list[int]:
        """``rows`` ordered by how many faces lie within max_distance (of the nearest
        ``neighbours``), most first, then by face id: core points seed persons before the faces
        at their edges are placed."""
        counts = np.zeros(len(rows), np.int64)
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            _, found = self._neighbours(part)
            counts[start : start + len(part)] = (found >= 0).sum(axis=1)
        order = np.lexsort((self.ids[rows], -counts))
        return [int(r) for r in rows[order]]

    def regroup(self) -> Changes:
        """The full grouping (after a bulk import): every face not held by a decision (pinned, or
        in a kept person) is released and placed again, densest first. New automatic persons take
        the ids of the old ones they overlap most, so links to them mostly survive."""
        changes = Changes()
        before = self.person.copy()
        kept = np.asarray(sorted(self.kept_people()), np.int64)
        free = ~self.pinned & ~np.isin(self.person, kept)
        old_automatic = set(np.unique(before[free]).tolist()) - {NO_PERSON}
        self.person[free] = NO_PERSON
        with self._pass():
            for row in self._densest_first(np.nonzero(free)[0]):
                if self.person[row] == NO_PERSON:
                    self._place(row, changes)
            self._retry(changes)
        self._reuse_ids(before, old_automatic, changes)
        self._drop_empty_automatic(changes)
        # Report the faces whose person changed, nothing else.
        moved = np.nonzero(self.person != before)[0]
        changes.faces = {self.face(int(r)).key: self.face(int(r)) for r in moved}
        return changes

    def _reuse_ids(self, before: np.ndarray, old_ids: set[int], changes: Changes) -> None:
        """Give each person made by this regrouping the id of the old automatic person it shares
        most faces with (largest overlaps first, each old id once); old ones left empty go."""
        made = np.asarray([p for p in changes.people if p in self.people and p not in old_ids], np.int64)
        rows = np.nonzero(
            np.isin(self.person, made) & np.isin(before, np.asarray(sorted(old_ids), np.int64))
        )[0]
        pairs, counts = np.unique(
            np.stack([self.person[rows], before[rows]], axis=1), axis=0, return_counts=True
        )
        overlaps = [(int(c), int(new), int(old)) for (new, old), c in zip(pairs, counts, strict=True)]
        renamed: dict[int, int] = {}
        taken_old: set[int] = set()
        for _, new, old in sorted(overlaps, reverse=True):
            if new in renamed or old in taken_old:
                continue
            renamed[new] = old
            taken_old.add(old)
            del self.people[new]
            changes.people.pop(new, None)  # never written: the old record stays as it was
        if renamed:
            news = np.asarray(sorted(renamed), np.int64)
            olds = np.asarray([renamed[n] for n in news.tolist()], np.int64)
            positions = np.clip(np.searchsorted(news, self.person), 0, len(news) - 1)
            hit = news[positions] == self.person
            self.person[hit] = olds[positions[hit]]
        held = set(np.unique(self.person).tolist())
        for old in sorted(old_ids - taken_old):
            if old in self.people and old not in held:
                self._drop_person(old, changes)
