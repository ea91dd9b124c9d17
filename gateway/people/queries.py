"""What the people routes read, straight from the records in PostgreSQL (no grouping in memory):
the people largest first, a person's images, the images holding several people, the faces of
images, the face crops. Plain functions over a :class:`~services.common.postgres.database.SqlRunner`.

A merged person's id keeps answering for the person it was merged into (links to it follow
``merged_into``). Hidden people are listed only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.postgres.database import Cursor, SqlRunner

FaceKey = tuple[int, int]

#: Merges followed from an id at most (a longer chain would be a loop).
MAX_MERGE_CHAIN = 64


@dataclass(frozen=True)
class Crop:
    webp: bytes
    etag: str


def _person(row: tuple[Any, ...]) -> dict[str, Any]:
    person_id, name, hidden, faces, images, cover_image, cover_index, box = row
    cover = None
    if cover_image is not None:
        cover = {"image_id": cover_image, "face": cover_index, "box": [round(float(v), 1) for v in box]}
    return {
        "person_id": person_id,
        "name": name,
        "hidden": hidden,
        "faces": faces,
        "images": images,
        "cover": cover,
    }


PERSON_COLUMNS = (
    "p.person_id, p.name, p.hidden, p.faces, p.images, p.cover_image_id, p.cover_face_index, c.box"
    " FROM people p LEFT JOIN people_faces c ON c.image_id = p.cover_image_id"
    " AND c.face_index = p.cover_face_index"
)


def list_people(db: SqlRunner, hidden: bool, limit: int, after: tuple[int, int] | None) -> dict[str, Any]:
    """People with faces, most faces first (then by id), ``limit`` at a time; ``after``: the
    ``(faces, person_id)`` of the last one of the previous page."""

    def run(cur: Cursor) -> dict[str, Any]:
        where = "p.merged_into IS NULL AND p.faces > 0" + ("" if hidden else " AND NOT p.hidden")
        params: list[Any] = []
        if after is not None:
            where += " AND (p.faces < %s OR (p.faces = %s AND p.person_id > %s))"
            params += [after[0], after[0], after[1]]
        cur.execute(
            f"SELECT {PERSON_COLUMNS} WHERE {where} ORDER BY p.faces DESC, p.person_id LIMIT %s",
            (*params, limit + 1),
        )
        rows = [_person(r) for r in cur.fetchall()]
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = f"{rows[-1]['faces']}.{rows[-1]['person_id']}" if more else None
        return {"people": rows, "next": cursor}

    return db.run(run)


def resolve(cur: Cursor, person_id: int) -> int | None:
    """The person an id stands for now (following merges), None when there is no such person."""
    for _ in range(MAX_MERGE_CHAIN):
        cur.execute("SELECT merged_into FROM people WHERE person_id = %s", (person_id,))
        row = cur.fetchone()
        if row is None:
            return None
        if row[0] is None:
            return person_id
        person_id = int(row[0])
    return None


def person(db: SqlRunner, person_id: int) -> dict[str, Any] | None:
    def run(cur: Cursor) -> dict[str, Any] | None:
        found = resolve(cur, person_id)
        if found is None:
            return None
        cur.execute(f"SELECT {PERSON_COLUMNS} WHERE p.person_id = %s", (found,))
        return _person(cur.fetchone())

    return db.run(run)


def _faces_by_image(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    images: dict[int, dict[str, Any]] = {}
    for image_id, index, box in rows:
        entry = images.setdefault(image_id, {"image_id": image_id, "faces": []})
        entry["faces"].append({"face": index, "box": [round(float(v), 1) for v in box]})
    return list(images.values())


def person_images(db: SqlRunner, person_id: int, limit: int, after: int | None) -> dict[str, Any] | None:
    """The images a person is in, by id, with the person's faces in each; None for no such person."""

    def run(cur: Cursor) -> dict[str, Any] | None:
        found = resolve(cur, person_id)
        if found is None:
            return None
        cur.execute(
            "WITH page AS (SELECT DISTINCT image_id FROM people_faces WHERE person_id = %s"
            " AND image_id > %s ORDER BY image_id LIMIT %s)"
            " SELECT f.image_id, f.face_index, f.box FROM people_faces f JOIN page USING (image_id)"
            " WHERE f.person_id = %s ORDER BY f.image_id, f.face_index",
            (found, -1 if after is None else after, limit + 1, found),
        )
        images = _faces_by_image(cur.fetchall())
        more = len(images) > limit
        images = images[:limit]
        return {
            "person_id": found,
            "images": images,
            "next": images[-1]["image_id"] if more else None,
        }

    return db.run(run)


def images_with(db: SqlRunner, person_ids: list[int], limit: int, after: int | None) -> dict[str, Any]:
    """The images that hold every one of ``person_ids`` (KeyError naming an unknown one)."""

    def run(cur: Cursor) -> dict[str, Any]:
        resolved = []
        for person_id in person_ids:
            found = resolve(cur, person_id)
            if found is None:
                raise KeyError(person_id)
            resolved.append(found)
        wanted = sorted(set(resolved))
        cur.execute(
            "SELECT image_id FROM people_faces WHERE person_id = ANY(%s) AND image_id > %s"
            " GROUP BY image_id HAVING count(DISTINCT person_id) = %s ORDER BY image_id LIMIT %s",
            (wanted, -1 if after is None else after, len(wanted), limit + 1),
        )
        ids = [int(r[0]) for r in cur.fetchall()]
        more = len(ids) > limit
        ids = ids[:limit]
        return {"people": wanted, "image_ids": ids, "next": ids[-1] if more else None}

    return db.run(run)


def faces_of_images(db: SqlRunner, image_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per image (those with faces), its faces with their box and person; a hidden person's face
    shows no person (hidden everywhere), only ``hidden``."""

    def run(cur: Cursor) -> dict[int, list[dict[str, Any]]]:
        cur.execute(
            "SELECT f.image_id, f.face_index, f.box, f.person_id, p.name, COALESCE(p.hidden, false)"
            " FROM people_faces f LEFT JOIN people p ON p.person_id = f.person_id"
            " WHERE f.image_id = ANY(%s) ORDER BY f.image_id, f.face_index",
            (image_ids,),
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for image_id, index, box, person_id, name, hidden in cur.fetchall():
            face = {
                "face": index,
                "box": [round(float(v), 1) for v in box],
                "person_id": None if hidden else person_id,
                "name": None if hidden else name,
            }
            if hidden:
                face["hidden"] = True
            out.setdefault(int(image_id), []).append(face)
        return out

    return db.run(run)


def people_of_faces(db: SqlRunner, keys: list[FaceKey]) -> dict[FaceKey, tuple[int, str | None]]:
    """The person of each face of ``keys`` that has a person who is not hidden."""
    if not keys:
        return {}

    def run(cur: Cursor) -> dict[FaceKey, tuple[int, str | None]]:
        cur.execute(
            "SELECT f.image_id, f.face_index, p.person_id, p.name"
            " FROM unnest(%s::bigint[], %s::int[]) AS k(i, f)"
            " JOIN people_faces f ON f.image_id = k.i AND f.face_index = k.f"
            " JOIN people p ON p.person_id = f.person_id WHERE NOT p.hidden",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {(int(i), int(f)): (int(p), name) for i, f, p, name in cur.fetchall()}

    return db.run(run)


def hidden_faces(db: SqlRunner, keys: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``keys`` that are faces of a hidden person."""
    if not keys:
        return set()

    def run(cur: Cursor) -> set[tuple[int, int]]:
        cur.execute(
            "SELECT f.image_id, f.face_index FROM unnest(%s::bigint[], %s::int[]) AS k(i, f)"
            " JOIN people_faces f ON f.image_id = k.i AND f.face_index = k.f"
            " JOIN people p ON p.person_id = f.person_id WHERE p.hidden",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {(int(i), int(f)) for i, f in cur.fetchall()}

    return db.run(run)


def crop(db: SqlRunner, image_id: int, index: int) -> Crop | None:
    def run(cur: Cursor) -> Crop | None:
        cur.execute(
            "SELECT webp, etag FROM people_face_crops WHERE image_id = %s AND face_index = %s",
            (image_id, index),
        )
        row = cur.fetchone()
        return Crop(bytes(row[0]), row[1]) if row else None

    return db.run(run)


def cover_crop(db: SqlRunner, person_id: int) -> Crop | bool | None:
    """The crop of a person's cover face; False when there is no such person."""

    def run(cur: Cursor) -> Crop | bool | None:
        found = resolve(cur, person_id)
        if found is None:
            return False
        cur.execute(
            "SELECT c.webp, c.etag FROM people p JOIN people_face_crops c"
            " ON c.image_id = p.cover_image_id AND c.face_index = p.cover_face_index WHERE p.person_id = %s",
            (found,),
        )
        row = cur.fetchone()
        return Crop(bytes(row[0]), row[1]) if row else None

    return db.run(run)


def face_keys(db: SqlRunner) -> set[tuple[int, int]]:
    """Every face recorded (the rebuild compares them with the faces service's)."""

    def run(cur: Cursor) -> set[tuple[int, int]]:
        cur.execute("SELECT image_id, face_index FROM people_faces")
        return {(int(i), int(f)) for i, f in cur.fetchall()}

    return db.run(run)


def crops_missing(db: SqlRunner, limit: int = 1000) -> list[tuple[int, list[tuple[int, list[float]]]]]:
    """Images with faces that have no crop (recorded by a rebuild), with those faces' boxes."""

    def run(cur: Cursor) -> list[tuple[int, list[tuple[int, list[float]]]]]:
        cur.execute(
            "SELECT f.image_id, f.face_index, f.box FROM people_faces f WHERE NOT EXISTS"
            " (SELECT 1 FROM people_face_crops c"
            "  WHERE c.image_id = f.image_id AND c.face_index = f.face_index)"
            " ORDER BY f.image_id, f.face_index LIMIT %s",
            (limit,),
        )
        out: dict[int, list[tuple[int, list[float]]]] = {}
        for image_id, index, box in cur.fetchall():
            out.setdefault(int(image_id), []).append((int(index), [float(v) for v in box]))
        return list(out.items())

    return db.run(run)
