"""Small previews of every image, for the web page.

A thumbnail is made once, when the gateway adds an image (it has the upload's bytes then), and kept
in PostgreSQL next to the catalog: every gateway replica reads the same database, so each serves the
same previews, and a backup of the catalog holds them too. At 256 px on the long side as WebP a
preview is 5-15 KB, so 100,000 images cost about 1 GB of database.

Plain synchronous functions over :class:`services.common.postgres.Database`; the app calls them in
worker threads.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PIL import Image
from starlette.concurrency import run_in_threadpool

from services.common.images import DecodeLimits, decode_image
from services.common.postgres import Cursor, Database, Migration

COMPONENT = "thumbnails"

MIGRATIONS = [
    Migration(
        1,
        "thumbnails",
        """
        CREATE TABLE gateway_thumbnails (
            image_id bigint PRIMARY KEY,
            webp bytea NOT NULL,
            etag text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    )
]


@dataclass(frozen=True)
class Thumbnail:
    webp: bytes
    etag: str


def make_thumbnail(
    data: bytes, long_side: int = 256, quality: int = 80, limits: DecodeLimits | None = None
) -> bytes:
    """A WebP preview of ``data`` whose long side is at most ``long_side`` pixels.

    Decoded through the same safe path as every feature (limits checked before decoding, EXIF
    orientation applied, JPEGs decoded at reduced size), so a thumbnail never costs more than the
    features themselves. Raises :class:`services.common.images.ImageError` for what is no image.
    """
    decoded = decode_image(data, "RGB", limits=limits or DecodeLimits(), draft_size=long_side)
    img = decoded.image
    img.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "WEBP", quality=quality, method=4)
    return out.getvalue()


class ThumbnailKeeper:
    """Makes and keeps the preview of every image the gateway adds (a writer listener)."""

    def __init__(self, database: Callable[[], Database], long_side: int, limits: DecodeLimits) -> None:
        self.database = database
        self.long_side = long_side
        self.limits = limits

    async def image_added(
        self, image_id: int, data: bytes, file_name: str | None, source: bytes | None = None
    ) -> None:
        # ``data``: for a video the still the services got, decoded here without the video again
        webp = await run_in_threadpool(make_thumbnail, data, self.long_side, 80, self.limits)
        await run_in_threadpool(put, self.database(), image_id, webp)

    async def image_deleted(self, image_id: int) -> None:
        await run_in_threadpool(delete, self.database(), image_id)


def put(db: Database, image_id: int, webp: bytes) -> None:
    etag = hashlib.sha256(webp).hexdigest()[:16]

    def write(cur: Cursor) -> None:
        cur.execute(
            """
            INSERT INTO gateway_thumbnails (image_id, webp, etag) VALUES (%s, %s, %s)
            ON CONFLICT (image_id) DO UPDATE SET webp = EXCLUDED.webp, etag = EXCLUDED.etag,
                created_at = now()
            """,
            (image_id, webp, etag),
        )

    db.run(write)


def get(db: Database, image_id: int) -> Thumbnail | None:
    def read(cur: Cursor) -> Thumbnail | None:
        cur.execute("SELECT webp, etag FROM gateway_thumbnails WHERE image_id = %s", (image_id,))
        row = cur.fetchone()
        return Thumbnail(bytes(row[0]), row[1]) if row else None

    return db.run(read)


def delete(db: Database, image_id: int) -> None:
    db.run(lambda cur: cur.execute("DELETE FROM gateway_thumbnails WHERE image_id = %s", (image_id,)))


def missing(db: Database, image_ids: Iterable[int]) -> list[int]:
    """Those of ``image_ids`` that have no thumbnail yet (for the backfill command)."""
    ids = list(image_ids)
    if not ids:
        return []

    def query(cur: Cursor) -> list[int]:
        cur.execute(
            "SELECT i FROM unnest(%s::bigint[]) AS i "
            "WHERE NOT EXISTS (SELECT 1 FROM gateway_thumbnails t WHERE t.image_id = i) ORDER BY i",
            (ids,),
        )
        return [int(r[0]) for r in cur.fetchall()]

    return db.run(query)


def missing_in_catalog(db: Database, limit: int = 10_000) -> list[tuple[int, str | None]]:
    """(image_id, spool path or None) of added images that have no thumbnail, lowest ids first."""

    def query(cur: Cursor) -> list[tuple[int, str | None]]:
        cur.execute(
            "SELECT i.image_id, i.spool FROM gateway_images i "
            "WHERE i.op = 'add' AND NOT EXISTS "
            "(SELECT 1 FROM gateway_thumbnails t WHERE t.image_id = i.image_id) "
            "ORDER BY i.image_id LIMIT %s",
            (limit,),
        )
        return [(int(i), spool) for i, spool in cur.fetchall()]

    return db.run(query)


def ids(db: Database) -> list[int]:
    """Every image id that has a thumbnail, ascending."""

    def query(cur: Cursor) -> list[int]:
        cur.execute("SELECT image_id FROM gateway_thumbnails ORDER BY image_id")
        return [int(r[0]) for r in cur.fetchall()]

    return db.run(query)


def count(db: Database) -> int:
    def query(cur: Cursor) -> int:
        cur.execute("SELECT count(*) FROM gateway_thumbnails")
        return int(cur.fetchone()[0])

    return db.run(query)
