"""What the gateway knows of each image besides where it is stored: photo or video, format, size in
pixels and bytes, file name, capture and exposure time, GPS position, a video's duration, the
other half of a Live Photo (``gateway_image_info``). Read once, from the upload's header, when the
add is received (gateway/photo_metadata.py: the original file, also where the services get a still
of it), recorded with the add in the write ledger, and kept here by the ``facts`` step that follows
the add; dropped when the image is deleted. Moments split by capture time, duplicate groups pick
keepers and keep exposures apart, /image_info shows them.

Plain synchronous methods over a :class:`services.common.postgres.database.SqlRunner`; the app calls
them in worker threads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway import live_photos
from gateway.steps import AddedImage, StepFailed
from services.common.postgres.database import Cursor, SqlRunner

INFO_COLUMNS = (
    "width",
    "height",
    "bytes",
    "file_name",
    "captured_at",
    "exposed_at",
    "exposure_subsecond",
    "gps_latitude",
    "gps_longitude",
    "kind",
    "format",
    "duration_s",
    "live_photo_of",
)
#: The facts that are times (kept as ISO text where they travel as JSON).
TIME_COLUMNS = ("captured_at", "exposed_at")


def facts_as_json(info: dict[str, Any]) -> dict[str, Any]:
    """Facts as :func:`read_metadata` gives them, as a JSON object (times as ISO text)."""
    return {k: v.isoformat() if k in TIME_COLUMNS and v is not None else v for k, v in info.items()}


def facts_from_json(found: dict[str, Any]) -> dict[str, Any]:
    """The facts back from :func:`facts_as_json`."""
    return {
        k: datetime.fromisoformat(v) if k in TIME_COLUMNS and isinstance(v, str) else v
        for k, v in found.items()
    }


class ImageFacts:
    """The facts of every image, in the catalog's database."""

    def __init__(self, db: SqlRunner) -> None:
        self.db = db

    def record_info(self, image_id: int, info: dict[str, Any]) -> None:
        values = [info.get(c) for c in INFO_COLUMNS]
        columns = ", ".join(INFO_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INFO_COLUMNS)
        self.db.run(
            lambda cur: cur.execute(
                f"INSERT INTO gateway_image_info (image_id, {columns}) VALUES (%s{', %s' * len(values)})"
                f" ON CONFLICT (image_id) DO UPDATE SET {updates}",
                (image_id, *values),
            )
        )

    def info(self, image_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
        """Per image id (every image when ``image_ids`` is None): the recorded metadata."""

        def run(cur: Cursor) -> dict[int, dict[str, Any]]:
            query = f"SELECT image_id, {', '.join(INFO_COLUMNS)} FROM gateway_image_info"
            if image_ids is None:
                cur.execute(query)
            else:
                cur.execute(query + " WHERE image_id = ANY(%s)", (image_ids,))
            return {row[0]: dict(zip(INFO_COLUMNS, row[1:], strict=True)) for row in cur.fetchall()}

        return self.db.run(run)

    def info_or_recorded(self, image_ids: list[int]) -> dict[int, dict[str, Any]]:
        """:meth:`info`, and for images whose ``facts`` step has not run yet (an add being finished
        beside another) the facts recorded with their add, so that two adds in flight at once see
        each other's exposure times."""
        found = self.info(image_ids)
        missing = [i for i in image_ids if i not in found]
        if not missing:
            return found

        def run(cur: Cursor) -> dict[int, dict[str, Any]]:
            cur.execute(
                "SELECT image_id, facts FROM gateway_images"
                " WHERE image_id = ANY(%s) AND op = 'add' AND facts IS NOT NULL",
                (missing,),
            )
            return {int(i): facts_from_json(dict(facts)) for i, facts in cur.fetchall()}

        return {**found, **self.db.run(run)}

    def capture_times(self) -> dict[int, float]:
        """Capture time (seconds, as recorded: camera-local time) of every image that has one."""

        def run(cur: Cursor) -> dict[int, float]:
            cur.execute(
                "SELECT image_id, extract(epoch FROM captured_at) FROM gateway_image_info"
                " WHERE captured_at IS NOT NULL"
            )
            return {row[0]: float(row[1]) for row in cur.fetchall()}

        return self.db.run(run)

    def forget_image(self, image_id: int) -> None:
        """Drop an image's facts (it is being deleted)."""
        self.db.run(
            lambda cur: cur.execute("DELETE FROM gateway_image_info WHERE image_id = %s", (image_id,))
        )

    # -- the ``facts`` step that follows an add -------------------------------------------------------

    name = "facts"
    uses_upload = False
    needs_stored = False

    async def run(self, image: AddedImage) -> None:
        """Keep the facts the add recorded, and pair the image with the other half of its Live
        Photo when the catalog holds it."""
        if image.facts is None:
            raise StepFailed("no facts were recorded with the add")
        info = facts_from_json(image.facts)
        await run_in_threadpool(self.record_info, image.image_id, info)
        await run_in_threadpool(live_photos.pair, self.db, image.image_id, info)

    async def forget(self, image_id: int) -> None:
        await run_in_threadpool(self.forget_image, image_id)
        await run_in_threadpool(live_photos.unpair, self.db, image_id)
