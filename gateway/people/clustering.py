"""People: the stored faces grouped into persons, one face at a time, with the user's decisions kept.

Plain numpy + FAISS, no HTTP and no database: the gateway persists the records below
(:class:`Face`, :class:`Person`, :class:`Rejection`) and hands them back with the descriptors
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
from dataclasses import dataclass, field, replace

import faiss
import numpy as np

DIM = 128
#: Face keys pack (image_id, index) as image_id << ID_SHIFT | index, as the faces service does.
ID_SHIFT = 10
NO_PERSON = -1

FaceKey = tuple[int, int]


@dataclass(frozen=True)
class GroupingSettings:
    #: Two faces within this Euclidean distance are neighbours. dlib's same-person threshold is
    #: about 0.6; a grouping chains neighbours, so it needs less (dlib's clustering example: 0.5).
    max_distance: float = 0.5
    #: A face with this many faces within max_distance (itself included) founds a person.
    min_faces: int = 3
    #: Nearest faces looked at per face (a labelled one among them within max_distance is joined).
    neighbours: int = 16

    def __post_init__(self) -> None:
        if self.max_distance <= 0 or self.min_faces < 1 or self.neighbours < self.min_faces:
            raise ValueError(
                f"bad grouping settings {self}: need max_distance > 0 and 1 <= min_faces <= neighbours"
            )


@dataclass
class Face:
    """One face as the gateway keeps it: ``(image_id, index)`` is its id."""

    image_id: int
    index: int
    person_id: int | None = None
    #: A person's decision put it in ``person_id``: no grouping moves it.
    pinned: bool = False

    @property
    def key(self) -> FaceKey:
        return (self.image_id, self.index)


@dataclass
class Person:
    id: int
    name: str | None = None
    hidden: bool = False
    #: Set when merged into another person (the id then holds no faces; links to it can follow).
    merged_into: int | None = None


@dataclass(frozen=True)
class Rejection:
    """ "This face is not that person": a cannot-link every grouping honours."""

    image_id: int
    index: int
    person_id: int

    @property
    def key(self) -> FaceKey:
        return (self.image_id, self.index)


@dataclass
class Changes:
    """What an operation changed, as the records to write (final state) and to delete."""

    faces: dict[FaceKey, Face] = field(default_factory=dict)
    people: dict[int, Person] = field(default_factory=dict)
    removed_people: set[int] = field(default_factory=set)
    removed_faces: set[FaceKey] = field(default_factory=set)
    rejections_added: set[Rejection] = field(default_factory=set)
    rejections_removed: set[Rejection] = field(default_factory=set)

    def __bool__(self) -> bool:
        return any(
            (
                self.faces,
                self.people,
                self.removed_people,
                self.removed_faces,
                self.rejections_added,
                self.rejections_removed,
            )
        )


def face_key_id(image_id: int, index: int) -> int:
    return (image_id << ID_SHIFT) | index


def key_of(face_id: int) -> FaceKey:
    return (face_id >> ID_SHIFT, face_id & ((1 << ID_SHIFT) - 1))


class PeopleGrouping:
    """Faces, their descriptors, people and rejections; the grouping rules as methods.

    Rows: face ``i`` has descriptor ``vectors[i]``, person ``person[i]`` (NO_PERSON when
    unassigned) and ``pinned[i]``; the FAISS index holds the descriptors under the faces' packed
    ids. Not thread-safe: the gateway serialises operations (one writer).
    """

    def __init__(
        self,
        settings: GroupingSettings | None = None,
        faces: Iterable[Face] = (),
        descriptors: np.ndarray | None = None,
        people: Iterable[Person] = (),
        rejections: Iterable[Rejection] = (),
    ) -> None:
        self.settings = settings or GroupingSettings()
        self.index = faiss.IndexIDMap2(faiss.IndexFlatL2(DIM))
        self.ids = np.zeros(0, np.int64)
        self.person = np.zeros(0, np.int64)
        self.pinned = np.zeros(0, bool)
        self.row_of: dict[int, int] = {}
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, their rows)
        self.people: dict[int, Person] = {p.id: replace(p) for p in people}
        self.next_person = max(self.people, default=0) + 1
        self.rejected: dict[int, set[int]] = {}  # face id -> persons it is not
        for rejection in rejections:
            self.rejected.setdefault(face_key_id(*rejection.key), set()).add(rejection.person_id)
        faces = list(faces)
        if faces:
            vectors = np.zeros((0, DIM), np.float32) if descriptors is None else descriptors
            self._insert(faces, vectors)
        # Squared radius, nudged so that a distance of exactly max_distance is inside (FAISS
        # computes squared L2 in float32).
        self._pass_cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._radius2 = float(np.nextafter(np.float32(self.settings.max_distance**2), np.float32(np.inf)))

    # -- rows ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def _insert(self, faces: list[Face], descriptors: np.ndarray) -> np.ndarray:
        descriptors = np.ascontiguousarray(descriptors, np.float32).reshape(-1, DIM)
        if len(descriptors) != len(faces):
            raise ValueError(f"{len(faces)} faces but {len(descriptors)} descriptors")
        ids = np.fromiter((face_key_id(f.image_id, f.index) for f in faces), np.int64, len(faces))
        duplicates = [key_of(int(i)) for i in ids if int(i) in self.row_of]
        if duplicates or len(set(ids.tolist())) != len(ids):
            raise ValueError(f"faces already present: {duplicates[:5] or 'repeated in the batch'}")
        unknown = {f.person_id for f in faces if f.person_id is not None} - set(self.people)
        if unknown:
            raise ValueError(f"faces name unknown people {sorted(unknown)[:5]}")
        start = len(self.ids)
        self.ids = np.concatenate([self.ids, ids])
        people = [NO_PERSON if f.person_id is None else f.person_id for f in faces]
        self.person = np.concatenate([self.person, np.asarray(people, np.int64)])
        self.pinned = np.concatenate([self.pinned, np.asarray([f.pinned for f in faces], bool)])
        for row, face_id in enumerate(ids.tolist(), start):
            self.row_of[face_id] = row
        self.index.add_with_ids(descriptors, ids)
        self._sorted = None
        return np.arange(start, len(self.ids))

    def _row(self, key: FaceKey) -> int:
        row = self.row_of.get(face_key_id(*key))
        if row is None:
            raise KeyError(f"no face {key}")
        return row

    def face(self, row: int) -> Face:
        person = int(self.person[row])
        image_id, index = key_of(int(self.ids[row]))
        return Face(image_id, index, None if person == NO_PERSON else person, bool(self.pinned[row]))

    def faces(self) -> Iterator[Face]:
        return (self.face(row) for row in range(len(self.ids)))

    def rejections(self) -> Iterator[Rejection]:
        for face_id, persons in self.rejected.items():
            for person in sorted(persons):
                yield Rejection(*key_of(face_id), person)

    def faces_of(self, person_id: int) -> list[FaceKey]:
        return [key_of(int(i)) for i in self.ids[self.person == person_id]]

    def unassigned(self) -> list[FaceKey]:
        return [key_of(int(i)) for i in self.ids[self.person == NO_PERSON]]

    def person_of(self, key: FaceKey) -> int | None:
        person = int(self.person[self._row(key)])
        return None if person == NO_PERSON else person

    def kept(self, person_id: int) -> bool:
        """A person some decision holds: named, hidden, or with a face a person pinned there."""
        person = self.people.get(person_id)
        if person is None:
            return False
        return person.name is not None or person.hidden or bool(self.pinned[self.person == person_id].any())

    def kept_people(self) -> set[int]:
        """Every kept person (one pass over the faces, however many people)."""
        pinned = set(np.unique(self.person[self.pinned]).tolist()) - {NO_PERSON}
        return pinned | {p.id for p in self.people.values() if p.name is not None or p.hidden}

    # -- neighbours ------------------------------------------------------------------------------------

    def _neighbours(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distances², rows) of each row's ``neighbours`` nearest other faces, -1 where beyond
        max_distance. Inside a pass over the stored faces (no face added or removed meanwhile) the
        answers are kept: a regrouping asks FAISS once per face, in batches."""
        cache = self._pass_cache
        if cache is not None and all(int(r) in cache for r in rows):
            pairs = [cache[int(r)] for r in rows]
            return np.vstack([p[0] for p in pairs]), np.vstack([p[1] for p in pairs])
        k = min(self.settings.neighbours + 1, len(self.ids))
        vectors = self.index.reconstruct_batch(self.ids[np.asarray(rows)])
        squared, ids = self.index.search(vectors, k)
        found = self._rows_of(ids)
        found[squared > self._radius2] = -1
        found[found == np.asarray(rows)[:, None]] = -1  # not itself
        if cache is not None:
            for i, row in enumerate(rows):
                cache[int(row)] = (squared[i : i + 1], found[i : i + 1])
        return squared, found

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The rows of FAISS ids (-1 stays -1), vectorised over a sorted copy of the ids."""
        if self._sorted is None:
            order = np.argsort(self.ids, kind="stable")
            self._sorted = (self.ids[order], order)
        keys, order = self._sorted
        if not len(keys):
            return np.full(ids.shape, -1, np.int64)
        positions = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
        return np.where((ids >= 0) & (keys[positions] == ids), order[positions], -1)

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

    # -- mirroring persisted state ---------------------------------------------------------------------
    # Another process (a gateway replica) changed the records: the gateway applies what it reads back,
    # as it is, without the rules (gateway/people/memory.py).

    def put_people(self, people: Iterable[Person]) -> None:
        for person in people:
            self.people[person.id] = replace(person)
            self.next_person = max(self.next_person, person.id + 1)

    def drop_people(self, person_ids: Iterable[int]) -> None:
        for person_id in person_ids:
            self.people.pop(person_id, None)

    def has_face(self, key: FaceKey) -> bool:
        return face_key_id(*key) in self.row_of

    def put_faces(self, faces: list[Face], descriptors: np.ndarray) -> None:
        """Faces as recorded: those already here take their person and pin, the others are inserted
        with ``descriptors`` (one row per face not here yet, in order)."""
        new = [f for f in faces if not self.has_face(f.key)]
        for face in faces:
            row = self.row_of.get(face_key_id(*face.key))
            if row is not None:
                self.person[row] = NO_PERSON if face.person_id is None else face.person_id
                self.pinned[row] = face.pinned
        if new:
            self._insert(new, descriptors)

    def drop_faces(self, keys: Iterable[FaceKey]) -> None:
        """Faces gone from the records (and their rejections), nothing else."""
        wanted = np.asarray(sorted({face_key_id(*k) for k in keys}), np.int64)
        gone = np.isin(self.ids, wanted)
        if not gone.any():
            return
        for face_id in self.ids[gone].tolist():
            self.rejected.pop(face_id, None)
        self.index.remove_ids(self.ids[gone])
        keep = ~gone
        self.ids, self.person, self.pinned = self.ids[keep], self.person[keep], self.pinned[keep]
        self.row_of = {face_id: row for row, face_id in enumerate(self.ids.tolist())}
        self._sorted = None

    def put_rejections(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            self.rejected.setdefault(face_key_id(*rejection.key), set()).add(rejection.person_id)

    def drop_rejections(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            persons = self.rejected.get(face_key_id(*rejection.key))
            if persons is not None:
                persons.discard(rejection.person_id)

    def descriptors_of(self, rows: np.ndarray) -> np.ndarray:
        """The descriptors of ``rows`` (float32, n x 128)."""
        if not len(rows):
            return np.zeros((0, DIM), np.float32)
        return self.index.reconstruct_batch(self.ids[np.asarray(rows)])

    # -- decisions -------------------------------------------------------------------------------------------

    def new_person(self, name: str | None = None) -> tuple[int, Changes]:
        changes = Changes()
        person_id = self._new_person(changes)
        if name is not None:
            self.people[person_id].name = name
            changes.people[person_id] = replace(self.people[person_id])
        return person_id, changes

    def move(self, key: FaceKey, person_id: int) -> Changes:
        """ "This face is this person": pinned there (a rejection of that person is withdrawn)."""
        if person_id not in self.people or self.people[person_id].merged_into is not None:
            raise KeyError(f"no person {person_id}")
        changes = Changes()
        row = self._row(key)
        previous = int(self.person[row])
        rejected = self.rejected.get(int(self.ids[row]), set())
        if person_id in rejected:
            rejected.discard(person_id)
            changes.rejections_removed.add(Rejection(*key, person_id))
        self._set_person(row, person_id, changes, pinned=True)
        if previous not in (NO_PERSON, person_id):
            self._drop_empty_automatic(changes)
        return changes

    def reject(self, key: FaceKey, person_id: int) -> Changes:
        """ "This face is not this person": recorded; the face leaves the person (and its pin) and
        is placed again by the rule, never into that person."""
        changes = Changes()
        row = self._row(key)
        self.rejected.setdefault(int(self.ids[row]), set()).add(person_id)
        changes.rejections_added.add(Rejection(*key, person_id))
        if self.person[row] == person_id:
            self._set_person(row, NO_PERSON, changes, pinned=False)
            self._place(row, changes)
            self._drop_empty_automatic(changes)
        return changes

    def withdraw(self, key: FaceKey, person_id: int) -> Changes:
        """A "not this person" taken back (nothing moves until the next grouping)."""
        changes = Changes()
        rejected = self.rejected.get(face_key_id(*key), set())
        if person_id in rejected:
            rejected.discard(person_id)
            changes.rejections_removed.add(Rejection(*key, person_id))
        return changes

    def merge(self, source: int, target: int) -> Changes:
        """Two people are one: the faces of both are pinned into ``target``; ``source`` is
        recorded as merged into it. A face that rejected either now rejects the merged person (and
        one of them that did leaves it, placed again by the rule)."""
        if source == target:
            raise ValueError("a person cannot be merged into itself")
        for person_id in (source, target):
            if person_id not in self.people or self.people[person_id].merged_into is not None:
                raise KeyError(f"no person {person_id}")
        changes = Changes()
        # A face of either that was told it is not the other (or not its own person, and joined the
        # other since) cannot be pinned into the merged person: it is placed again by the rule.
        released = []
        for row in np.nonzero(np.isin(self.person, [source, target]))[0].tolist():
            if self.rejected.get(int(self.ids[row]), set()) & {source, target}:
                self._set_person(row, NO_PERSON, changes, pinned=False)
                released.append(row)
            else:
                self._set_person(row, target, changes, pinned=True)
        for face_id, persons in self.rejected.items():
            if source in persons:
                persons.discard(source)
                persons.add(target)
                changes.rejections_removed.add(Rejection(*key_of(face_id), source))
                changes.rejections_added.add(Rejection(*key_of(face_id), target))
        merged = self.people[source]
        if merged.name is not None and self.people[target].name is None:
            self.people[target].name = merged.name
            changes.people[target] = replace(self.people[target])
        merged.merged_into = target
        changes.people[source] = replace(merged)
        for row in released:
            if self.person[row] == NO_PERSON:
                self._place(row, changes)
        # Links to the merged id follow merged_into; the record stays, holding no faces.
        return changes

    def rename(self, person_id: int, name: str | None) -> Changes:
        return self._update_person(person_id, name=name)

    def hide(self, person_id: int, hidden: bool = True) -> Changes:
        return self._update_person(person_id, hidden=hidden)

    def _update_person(self, person_id: int, **values: object) -> Changes:
        person = self.people.get(person_id)
        if person is None or person.merged_into is not None:
            raise KeyError(f"no person {person_id}")
        for name, value in values.items():
            setattr(person, name, value)
        changes = Changes()
        changes.people[person_id] = replace(person)
        return changes
