"""The people records in PostgreSQL (tables of gateway/people/schema.py): written from the
:class:`~gateway.people.clustering.Changes` an operation returns, read back whole or as what changed
since a generation. Plain functions over a cursor: they run inside the transactions of
gateway/people/memory.py, which holds the state row's lock while it writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from gateway.people.faces import DIM, Changes, Face, FaceKey, Person, Rejection
from services.common.postgres.database import Cursor

#: Generations whose removals stay logged: a replica further behind reloads the records whole.
REMOVALS_KEPT = 10_000
#: Above this many moved faces, every person's counts are recomputed at once.
RECOUNT_ALL_ABOVE = 5_000


@dataclass(frozen=True)
class NewFace:
    """A face as the faces service found it, about to be recorded."""

    image_id: int
    index: int
    box: tuple[float, float, float, float]
    score: float
    descriptor: np.ndarray

    @property
    def key(self) -> FaceKey:
        return (self.image_id, self.index)


@dataclass(frozen=True)
class State:
    generation: int
    next_person: int
    #: Removals of generations after this one are logged (a replica at or past it can follow).
    removals_from: int
    #: The generation the last retry pass left.
    retried_at: int


@dataclass
class Records:
    """People records read back: all of them, or those written after a generation (then with the
    faces, people and rejections removed since, that are not there any more)."""

    people: list[Person] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    #: Descriptors of the faces the reader did not know, in the order of those faces.
    descriptors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))
    rejections: list[Rejection] = field(default_factory=list)
    removed_faces: list[FaceKey] = field(default_factory=list)
    removed_people: list[int] = field(default_factory=list)
    removed_rejections: list[Rejection] = field(default_factory=list)


def read_state(cur: Cursor, lock: bool = False) -> State:
    """The state row; with ``lock`` held until the transaction ends (one writer at a time, across
    every gateway replica)."""
    cur.execute(
        "SELECT generation, next_person, removals_from, retried_at FROM people_state"
        + (" FOR UPDATE" if lock else "")
    )
    return State(*(int(v) for v in cur.fetchone()))


def write_state(cur: Cursor, generation: int, next_person: int, retried_at: int | None = None) -> None:
    cur.execute(
        "UPDATE people_state SET generation = %s, next_person = GREATEST(next_person, %s),"
        " retried_at = COALESCE(%s, retried_at)",
        (generation, next_person, retried_at),
    )
    trimmed = generation - REMOVALS_KEPT
    if trimmed > 0:
        cur.execute("DELETE FROM people_removals WHERE generation <= %s", (trimmed,))
        cur.execute("UPDATE people_state SET removals_from = GREATEST(removals_from, %s)", (trimmed,))


def _descriptors(rows: Iterable[bytes]) -> np.ndarray:
    data = b"".join(bytes(r) for r in rows)
    return np.frombuffer(data, "<f4").astype(np.float32).reshape(-1, DIM)


def _unnest_keys(keys: Iterable[FaceKey]) -> tuple[list[int], list[int]]:
    keys = list(keys)
    return [k[0] for k in keys], [k[1] for k in keys]


def read_all(cur: Cursor) -> Records:
    cur.execute("SELECT person_id, name, hidden, merged_into FROM people")
    people = [Person(int(p), name, bool(h), m) for p, name, h, m in cur.fetchall()]
    cur.execute(
        "SELECT image_id, face_index, person_id, pinned, descriptor FROM people_faces"
        " ORDER BY image_id, face_index"
    )
    rows = cur.fetchall()
    faces = [Face(int(i), int(f), p, bool(pin)) for i, f, p, pin, _ in rows]
    cur.execute("SELECT image_id, face_index, person_id FROM people_rejections")
    rejections = [Rejection(*map(int, r)) for r in cur.fetchall()]
    return Records(people, faces, _descriptors(r[4] for r in rows), rejections)


def read_since(cur: Cursor, since: int, known: Callable[[FaceKey], bool]) -> Records:
    """What was written after generation ``since``; ``known``: whether the reader holds a face
    already (only the others' descriptors are read)."""
    cur.execute("SELECT person_id, name, hidden, merged_into FROM people WHERE generation > %s", (since,))
    people = [Person(int(p), name, bool(h), m) for p, name, h, m in cur.fetchall()]
    cur.execute(
        "SELECT image_id, face_index, person_id, pinned FROM people_faces WHERE generation > %s"
        " ORDER BY image_id, face_index",
        (since,),
    )
    faces = [Face(int(i), int(f), p, bool(pin)) for i, f, p, pin in cur.fetchall()]
    new = [f.key for f in faces if not known(f.key)]
    descriptors = np.zeros((0, DIM), np.float32)
    if new:
        images, indexes = _unnest_keys(new)
        cur.execute(
            "SELECT f.descriptor FROM unnest(%s::bigint[], %s::int[]) WITH ORDINALITY AS k(i, f, n)"
            " JOIN people_faces f ON f.image_id = k.i AND f.face_index = k.f ORDER BY k.n",
            (images, indexes),
        )
        descriptors = _descriptors(r[0] for r in cur.fetchall())
    cur.execute(
        "SELECT image_id, face_index, person_id FROM people_rejections WHERE generation > %s", (since,)
    )
    rejections = [Rejection(*map(int, r)) for r in cur.fetchall()]
    # What was removed and is not there again (a person id or a face key may come back).
    cur.execute(
        "SELECT DISTINCT r.what, r.image_id, r.face_index, r.person_id FROM people_removals r"
        " WHERE r.generation > %s AND CASE r.what"
        " WHEN 'face' THEN NOT EXISTS (SELECT 1 FROM people_faces f"
        "  WHERE f.image_id = r.image_id AND f.face_index = r.face_index)"
        " WHEN 'person' THEN NOT EXISTS (SELECT 1 FROM people p WHERE p.person_id = r.person_id)"
        " ELSE NOT EXISTS (SELECT 1 FROM people_rejections j WHERE j.image_id = r.image_id"
        "  AND j.face_index = r.face_index AND j.person_id = r.person_id) END",
        (since,),
    )
    out = Records(people, faces, descriptors, rejections)
    for what, image_id, index, person_id in cur.fetchall():
        if what == "face":
            out.removed_faces.append((int(image_id), int(index)))
        elif what == "person":
            out.removed_people.append(int(person_id))
        else:
            out.removed_rejections.append(Rejection(int(image_id), int(index), int(person_id)))
    return out


def insert_faces(cur: Cursor, faces: list[NewFace], generation: int) -> None:
    """New faces, unassigned (the grouping's changes, persisted next, place them)."""
    if not faces:
        return
    cur.execute(
        "INSERT INTO people_faces (image_id, face_index, box, size, score, descriptor, generation)"
        " SELECT i, f, ARRAY[l, t, r, b]::real[], LEAST(r - l, b - t), s, d, %s"
        " FROM unnest(%s::bigint[], %s::int[], %s::real[], %s::real[], %s::real[], %s::real[],"
        " %s::real[], %s::bytea[]) AS v(i, f, l, t, r, b, s, d)",
        (
            generation,
            [f.image_id for f in faces],
            [f.index for f in faces],
            *([float(f.box[j]) for f in faces] for j in range(4)),
            [float(f.score) for f in faces],
            [np.ascontiguousarray(f.descriptor, "<f4").tobytes() for f in faces],
        ),
    )


def put_crops(cur: Cursor, crops: dict[FaceKey, bytes]) -> None:
    if not crops:
        return
    images, indexes = _unnest_keys(crops)
    webps = list(crops.values())
    cur.execute(
        "INSERT INTO people_face_crops (image_id, face_index, webp, etag)"
        " SELECT * FROM unnest(%s::bigint[], %s::int[], %s::bytea[], %s::text[])"
        " ON CONFLICT (image_id, face_index) DO UPDATE SET webp = EXCLUDED.webp, etag = EXCLUDED.etag",
        (images, indexes, webps, [hashlib.sha256(w).hexdigest()[:16] for w in webps]),
    )


def _persons_of(cur: Cursor, keys: list[FaceKey]) -> set[int]:
    images, indexes = _unnest_keys(keys)
    cur.execute(
        "SELECT DISTINCT f.person_id FROM unnest(%s::bigint[], %s::int[]) AS k(i, f)"
        " JOIN people_faces f ON f.image_id = k.i AND f.face_index = k.f WHERE f.person_id IS NOT NULL",
        (images, indexes),
    )
    return {int(r[0]) for r in cur.fetchall()}


def _log_removals(cur: Cursor, generation: int, what: str, rows: list[tuple[int | None, ...]]) -> None:
    if rows:
        columns = list(zip(*rows, strict=True))
        cur.execute(
            "INSERT INTO people_removals (generation, what, image_id, face_index, person_id)"
            " SELECT %s, %s, * FROM unnest(%s::bigint[], %s::int[], %s::bigint[])",
            (generation, what, list(columns[0]), list(columns[1]), list(columns[2])),
        )


def persist(cur: Cursor, changes: Changes, generation: int) -> None:
    """Write ``changes`` under ``generation``, then the counts and covers of every person they touch."""
    affected = set(changes.people) | set(changes.removed_people)
    recount_all = len(changes.faces) > RECOUNT_ALL_ABOVE
    if changes.people:
        people = list(changes.people.values())
        cur.execute(
            "INSERT INTO people (person_id, name, hidden, merged_into, generation)"
            " SELECT *, %s FROM unnest(%s::bigint[], %s::text[], %s::boolean[], %s::bigint[])"
            " ON CONFLICT (person_id) DO UPDATE SET name = EXCLUDED.name, hidden = EXCLUDED.hidden,"
            " merged_into = EXCLUDED.merged_into, generation = EXCLUDED.generation",
            (
                generation,
                [p.id for p in people],
                [p.name for p in people],
                [p.hidden for p in people],
                [p.merged_into for p in people],
            ),
        )
    if changes.removed_faces:
        keys = sorted(changes.removed_faces)
        affected |= _persons_of(cur, keys)
        images, indexes = _unnest_keys(keys)
        for table in ("people_faces", "people_face_crops", "people_rejections"):
            cur.execute(
                f"DELETE FROM {table} t USING unnest(%s::bigint[], %s::int[]) AS k(i, f)"
                " WHERE t.image_id = k.i AND t.face_index = k.f",
                (images, indexes),
            )
        _log_removals(cur, generation, "face", [(i, f, None) for i, f in keys])
    if changes.faces:
        faces = list(changes.faces.values())
        if not recount_all:
            affected |= _persons_of(cur, [f.key for f in faces])
            affected |= {f.person_id for f in faces if f.person_id is not None}
        cur.execute(
            "UPDATE people_faces t SET person_id = v.p, pinned = v.pin, generation = %s"
            " FROM unnest(%s::bigint[], %s::int[], %s::bigint[], %s::boolean[]) AS v(i, f, p, pin)"
            " WHERE t.image_id = v.i AND t.face_index = v.f",
            (
                generation,
                [f.image_id for f in faces],
                [f.index for f in faces],
                [f.person_id for f in faces],
                [f.pinned for f in faces],
            ),
        )
    if changes.rejections_removed:
        gone = sorted(changes.rejections_removed, key=lambda r: (r.image_id, r.index, r.person_id))
        cur.execute(
            "DELETE FROM people_rejections t USING unnest(%s::bigint[], %s::int[], %s::bigint[])"
            " AS k(i, f, p) WHERE t.image_id = k.i AND t.face_index = k.f AND t.person_id = k.p",
            ([r.image_id for r in gone], [r.index for r in gone], [r.person_id for r in gone]),
        )
        _log_removals(cur, generation, "rejection", [(r.image_id, r.index, r.person_id) for r in gone])
    if changes.rejections_added:
        added = list(changes.rejections_added)
        cur.execute(
            "INSERT INTO people_rejections (image_id, face_index, person_id, generation)"
            " SELECT *, %s FROM unnest(%s::bigint[], %s::int[], %s::bigint[])"
            " ON CONFLICT (image_id, face_index, person_id) DO UPDATE SET generation = EXCLUDED.generation",
            (generation, [r.image_id for r in added], [r.index for r in added], [r.person_id for r in added]),
        )
    if changes.removed_people:
        removed = sorted(changes.removed_people)
        cur.execute("DELETE FROM people WHERE person_id = ANY(%s)", (removed,))
        _log_removals(cur, generation, "person", [(None, None, p) for p in removed])
    recount(cur, None if recount_all else affected - set(changes.removed_people))


def recount(cur: Cursor, person_ids: set[int] | None) -> None:
    """Faces, images and the cover of these people (every person when None). A cover stays while
    its face is still the person's; else the pinned, then largest face."""
    if person_ids is not None and not person_ids:
        return
    if person_ids is None:
        cur.execute("SELECT person_id FROM people")
        ids = [int(r[0]) for r in cur.fetchall()]
    else:
        ids = sorted(person_ids)
    cur.execute(
        "WITH a AS (SELECT unnest(%s::bigint[]) AS person_id),"
        " s AS (SELECT person_id, count(*) AS faces, count(DISTINCT image_id) AS images FROM people_faces"
        "  WHERE person_id = ANY(%s) GROUP BY person_id)"
        " UPDATE people p SET faces = COALESCE(s.faces, 0), images = COALESCE(s.images, 0)"
        " FROM a LEFT JOIN s USING (person_id) WHERE p.person_id = a.person_id",
        (ids, ids),
    )
    cur.execute(
        "UPDATE people p SET (cover_image_id, cover_face_index) = (SELECT f.image_id, f.face_index"
        "  FROM people_faces f WHERE f.person_id = p.person_id"
        "  ORDER BY f.pinned DESC, f.size DESC, f.image_id, f.face_index LIMIT 1)"
        " WHERE p.person_id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM people_faces f"
        "  WHERE f.person_id = p.person_id AND f.image_id = p.cover_image_id"
        "  AND f.face_index = p.cover_face_index)",
        (ids,),
    )
