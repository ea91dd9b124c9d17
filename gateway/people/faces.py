"""The faces the people grouping holds, in memory: the records the gateway persists (:class:`Face`,
:class:`Person`, :class:`Rejection`, :class:`Changes`), and :class:`FaceTable`, every face's
descriptor, person and pin with the exact FAISS index that finds its neighbours, mirrored from the
records another gateway wrote. The rules that group the faces are gateway/people/clustering.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


class FaceTable:
    """Faces, their descriptors, people and rejections (no rules).

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
