"""Live Photos: a still and the short video a phone records around it, kept as a pair in the catalog.

An iPhone writes ``IMG_1234.HEIC`` and ``IMG_1234.MOV`` (about 3 s) for one Live Photo; exports and
other phones do the same with JPEG and MP4. When an image is added, the other half is looked for
among what the catalog already holds: the same file name up to its extension (and folder, as the
client sent it; case ignored), the other kind, a video of at most :data:`MAX_VIDEO_S`, and capture
times within :data:`MAX_GAP_S` of each other. Each half then names the other (``live_photo_of`` in
``/image_info``), whichever was added first. A video whose container keeps only the UTC creation
time pairs with the still's camera-local EXIF time when the two differ by a whole time-zone offset
(a multiple of 15 minutes, at most 14 hours) give or take the same few seconds.

Plain synchronous functions over the catalog's database; the ``facts`` step that follows an add
calls them in a worker thread right after it records the image's facts (gateway/image_facts.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.postgres.database import Cursor, SqlRunner

#: Longest video that can be the motion half of a Live Photo (Apple's are about 3 s).
MAX_VIDEO_S = 6.0
#: Largest difference between the capture times of the two halves.
MAX_GAP_S = 5.0
#: Time-zone offsets are whole quarter hours, and at most 14 hours.
_ZONE_STEP_S = 900
_MAX_ZONE_S = 14 * 3600

#: The catalog's base name of a file: lower case, without its extension (the migration indexes it).
BASE_NAME_SQL = r"lower(regexp_replace(file_name, '\.[^./\\]*$', ''))"

UNPAIR = "UPDATE gateway_image_info SET live_photo_of = NULL WHERE live_photo_of = %s"


def base_name(file_name: str) -> str:
    """What :data:`BASE_NAME_SQL` computes, in Python."""
    stem, dot, extension = file_name.rpartition(".")
    if not dot or "/" in extension or "\\" in extension:
        return file_name.lower()
    return stem.lower()


def time_gap(a: datetime, b: datetime) -> float:
    """Seconds between two capture times, or between one and the other moved by a time-zone offset
    (one time UTC, the other camera-local), whichever is less."""
    gap = abs((a - b).total_seconds())
    if gap > _MAX_ZONE_S + MAX_GAP_S:
        return gap
    return min(gap, abs(gap - round(gap / _ZONE_STEP_S) * _ZONE_STEP_S))


def halves(info: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two recorded images (their catalog metadata) are the still and the video of one Live
    Photo (the file names are matched by the query)."""
    kinds = {info.get("kind"), other.get("kind")}
    if kinds != {"photo", "video"}:
        return False
    video = info if info.get("kind") == "video" else other
    duration = video.get("duration_s")
    if duration is None or duration > MAX_VIDEO_S:
        return False
    mine, theirs = info.get("captured_at"), other.get("captured_at")
    return mine is not None and theirs is not None and time_gap(mine, theirs) <= MAX_GAP_S


def pair(db: SqlRunner, image_id: int, info: dict[str, Any]) -> int | None:
    """Link ``image_id`` (just recorded with ``info``) to the other half of its Live Photo when the
    catalog holds it; returns that half's id. Whatever pointed to ``image_id`` before is unlinked
    first (a re-added image is paired anew)."""

    def run(cur: Cursor) -> int | None:
        cur.execute(UNPAIR, (image_id,))
        name, kind = info.get("file_name"), info.get("kind")
        if not name or kind not in ("photo", "video"):
            return None
        cur.execute(
            "SELECT image_id, kind, captured_at, duration_s FROM gateway_image_info"
            f" WHERE {BASE_NAME_SQL} = %s AND image_id <> %s AND kind = %s"
            " AND (live_photo_of IS NULL OR live_photo_of = %s)",
            (base_name(name), image_id, "video" if kind == "photo" else "photo", image_id),
        )
        candidates = [
            {"image_id": row[0], "kind": row[1], "captured_at": row[2], "duration_s": row[3]}
            for row in cur.fetchall()
        ]
        found = [c for c in candidates if halves(info, c)]
        if not found:
            return None
        mine = info["captured_at"]
        other = min(found, key=lambda c: time_gap(c["captured_at"], mine))["image_id"]
        cur.execute(
            "UPDATE gateway_image_info SET live_photo_of = CASE image_id WHEN %s THEN %s ELSE %s END"
            " WHERE image_id IN (%s, %s)",
            (image_id, other, image_id, image_id, other),
        )
        return int(other)

    return db.run(run)


def unpair(db: SqlRunner, image_id: int) -> None:
    """The other half of a deleted image is no longer half of anything."""
    db.run(lambda cur: cur.execute(UNPAIR, (image_id,)))
