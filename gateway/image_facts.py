"""What the gateway knows of each image besides where it is stored: size in pixels and bytes, file
name, EXIF capture and exposure time, GPS position (``gateway_image_info``), recorded once when the
image is added (read from the upload's header: gateway/photo_metadata.py) and dropped when it is
deleted. Moments split by capture time, duplicate groups pick keepers and keep exposures apart,
/image_info shows it.

Plain synchronous methods over :class:`services.common.postgres.database.Database`; the app calls
them in worker threads. :class:`ImageFacts` is also the step that records them after an add.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.photo_metadata import read_metadata
from gateway.steps import AddedImage
from services.common.postgres.database import Cursor, Database

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
)


class ImageFacts:
    """The facts of every image, in the catalog's database."""

    def __init__(self, db: Database) -> None:
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

    def capture_times(self) -> dict[int, float]:
        """Capture time (seconds, as recorded: camera-local time) of every image that has one."""

        def run(cur: Cursor) -> dict[int, float]:
            cur.execute(
                "SELECT image_id, extract(epoch FROM captured_at) FROM gateway_image_info"
                " WHERE captured_at IS NOT NULL"
            )
            return {row[0]: float(row[1]) for row in cur.fetchall()}

        return self.db.run(run)

    def forget(self, image_id: int) -> None:
        """Drop an image's facts (it is being deleted)."""
        self.db.run(
            lambda cur: cur.execute("DELETE FROM gateway_image_info WHERE image_id = %s", (image_id,))
        )

    # -- the ``facts`` step that follows an add: read once, from the upload's header ---------------

    name = "facts"
    uses_upload = True
    needs_stored = False

    async def run(self, image: AddedImage) -> None:
        assert image.data is not None
        facts = await run_in_threadpool(read_metadata, image.data, image.file_name)
        await run_in_threadpool(self.record_info, image.image_id, facts)
