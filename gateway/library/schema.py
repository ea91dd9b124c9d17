"""The library's table in PostgreSQL (migration component ``library``): one row per image the
library shows, with what its grid, its filters and its moments read.

``library_images`` is written by the ``place`` step that follows every add (and by the backfill
for images added before it existed: gateway/library/backfill.py) and dropped with the image.
``taken_at`` is the EXIF capture time (the camera's wall clock) or, for an image without one, the
time it was added (in the gateway's local time, the same kind of wall clock), so that every image
has a place in the newest-first order; ``captured`` says which. The place columns are the GPS
position geocoded offline (gateway/places.py); ``placed`` is false until that was done (an image
added before this table existed, until the backfill reaches it).

The indexes serve keyset paging, newest first, alone and under each filter that narrows by a
column of this table: ``(taken_at, image_id)`` read backwards, and the same behind ``kind``,
``country_code`` and ``city``.
"""

from __future__ import annotations

from services.common.postgres.database import Migration

COMPONENT = "library"

MIGRATIONS = [
    Migration(
        1,
        "the library: capture or add time, kind, size and place per image",
        """
        CREATE TABLE library_images (
            image_id bigint PRIMARY KEY,
            taken_at timestamp NOT NULL,
            captured boolean NOT NULL,
            added_at timestamptz NOT NULL,
            kind text NOT NULL DEFAULT 'photo',
            width integer,
            height integer,
            latitude double precision,
            longitude double precision,
            city text,
            region text,
            country text,
            country_code text,
            at_sea boolean NOT NULL DEFAULT false,
            placed boolean NOT NULL DEFAULT false
        );
        CREATE INDEX library_images_taken ON library_images (taken_at, image_id);
        CREATE INDEX library_images_kind ON library_images (kind, taken_at, image_id);
        CREATE INDEX library_images_country ON library_images (country_code, taken_at, image_id);
        CREATE INDEX library_images_city ON library_images (city, taken_at, image_id);
        CREATE INDEX library_images_unplaced ON library_images (image_id) WHERE NOT placed;
        """,
    )
]
