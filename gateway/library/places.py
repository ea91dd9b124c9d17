"""The library's places: how many images per country and city, the positions the map shows, and
what the backfill reads and writes (images the library has no row for yet, rows not geocoded yet).

Plain synchronous methods over a :class:`services.common.postgres.database.SqlRunner`; the app
calls them in worker threads. Geocoding itself is gateway/places.py; the step and the backfill
that use it are gateway/library/placing.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extras

from gateway.places import Place
from services.common.postgres.database import Cursor, SqlRunner

#: Decimal places of the map's positions: 0.01° is about a kilometre, so a street's photos are
#: one point with a count and 100,000 photos are a few thousand points.
POINT_DECIMALS = 2


@dataclass(frozen=True)
class MissingRow:
    """An added image with facts and no library row (added before the library kept rows)."""

    image_id: int
    facts: dict[str, Any]
    added_at: datetime


class LibraryPlaces:
    def __init__(self, db: SqlRunner) -> None:
        self.db = db

    def counts(self) -> dict[str, Any]:
        """Images per country and, within it, per city (largest first), with the middle of each
        city's positions; and how many are at sea, have no position, or are not geocoded yet."""

        def read(cur: Cursor) -> dict[str, Any]:
            cur.execute(
                "SELECT country_code, country, region, city, count(*), avg(latitude), avg(longitude)"
                " FROM library_images WHERE placed AND country_code IS NOT NULL"
                " GROUP BY country_code, country, region, city"
            )
            countries: dict[str, dict[str, Any]] = {}
            for code, country, region, city, n, lat, lon in cur.fetchall():
                entry = countries.setdefault(
                    code, {"country_code": code, "country": country, "count": 0, "cities": []}
                )
                entry["count"] += int(n)
                if city:
                    entry["cities"].append(
                        {"city": city, "region": region, "count": int(n), "latitude": lat, "longitude": lon}
                    )
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE latitude IS NULL),"
                " count(*) FILTER (WHERE at_sea), count(*) FILTER (WHERE NOT placed) FROM library_images"
            )
            total, without, at_sea, unplaced = (int(v) for v in cur.fetchone())
            for entry in countries.values():
                entry["cities"].sort(key=lambda c: (-c["count"], c["city"]))
            return {
                "countries": sorted(countries.values(), key=lambda c: (-c["count"], c["country"] or "")),
                "total": total,
                "without_position": without,
                "at_sea": at_sea,
                "not_placed": unplaced,
            }

        return self.db.run(read)

    def points(self) -> list[dict[str, Any]]:
        """The library's positions rounded to :data:`POINT_DECIMALS`: per point its image count,
        its highest image id and a city (and country) of its images."""
        scale = 10**POINT_DECIMALS

        def read(cur: Cursor) -> list[dict[str, Any]]:
            # integer cells and plain aggregates: hashed in one pass (numeric rounding and ordered
            # aggregates cost five times as much at 100,000 images)
            cur.execute(
                "SELECT round(latitude * %s)::int, round(longitude * %s)::int, count(*), max(image_id),"
                " min(city), min(country_code) FROM library_images WHERE latitude IS NOT NULL GROUP BY 1, 2",
                (scale, scale),
            )
            return [
                {
                    "lat": lat / scale,
                    "lon": lon / scale,
                    "count": int(n),
                    "image_id": int(highest),
                    "city": city,
                    "country_code": code,
                }
                for lat, lon, n, highest, city, code in cur.fetchall()
            ]

        return self.db.run(read)

    # -- the backfill's reads and writes ---------------------------------------------------------

    def to_do(self) -> tuple[int, int]:
        """(added images with facts and no library row, rows not geocoded yet)."""

        def read(cur: Cursor) -> tuple[int, int]:
            cur.execute(
                "SELECT count(*) FROM gateway_image_info f JOIN gateway_images i USING (image_id)"
                " WHERE i.op = 'add'"
                " AND NOT EXISTS (SELECT 1 FROM library_images l WHERE l.image_id = f.image_id)"
            )
            missing = int(cur.fetchone()[0])
            cur.execute("SELECT count(*) FROM library_images WHERE NOT placed")
            return missing, int(cur.fetchone()[0])

        return self.db.run(read)

    def missing_rows(self, after: int, limit: int) -> list[MissingRow]:
        """Added images above ``after`` whose facts are recorded and that have no library row,
        lowest ids first; the time the ledger last changed them stands in for when they were added
        (no earlier record says)."""

        def read(cur: Cursor) -> list[MissingRow]:
            cur.execute(
                "SELECT f.image_id, f.captured_at, f.gps_latitude, f.gps_longitude, f.kind, f.width,"
                " f.height, i.updated_at FROM gateway_image_info f JOIN gateway_images i USING (image_id)"
                " WHERE i.op = 'add' AND f.image_id > %s"
                " AND NOT EXISTS (SELECT 1 FROM library_images l WHERE l.image_id = f.image_id)"
                " ORDER BY f.image_id LIMIT %s",
                (after, limit),
            )
            keys = ("captured_at", "gps_latitude", "gps_longitude", "kind", "width", "height")
            return [MissingRow(int(r[0]), dict(zip(keys, r[1:7], strict=True)), r[7]) for r in cur.fetchall()]

        return self.db.run(read)

    def unplaced(self, after: int, limit: int) -> list[tuple[int, float | None, float | None]]:
        """(image_id, latitude, longitude) of rows not geocoded yet above ``after``, lowest first."""

        def read(cur: Cursor) -> list[tuple[int, float | None, float | None]]:
            cur.execute(
                "SELECT image_id, latitude, longitude FROM library_images WHERE NOT placed AND image_id > %s"
                " ORDER BY image_id LIMIT %s",
                (after, limit),
            )
            return [(int(i), lat, lon) for i, lat, lon in cur.fetchall()]

        return self.db.run(read)

    def set_places(self, places: list[tuple[int, Place | None]]) -> None:
        """Record the places found for rows (None: no place known), marking them geocoded."""
        if not places:
            return
        values = [
            (i, p.city, p.region, p.country, p.country_code, p.at_sea)
            if p is not None
            else (i, None, None, None, None, False)
            for i, p in places
        ]

        def write(cur: Cursor) -> None:
            psycopg2.extras.execute_values(
                cur,
                "UPDATE library_images l SET city = v.city, region = v.region, country = v.country,"
                " country_code = v.code, at_sea = v.at_sea, placed = true"
                " FROM (VALUES %s) AS v (image_id, city, region, country, code, at_sea)"
                " WHERE l.image_id = v.image_id",
                values,
                template="(%s::bigint, %s::text, %s::text, %s::text, %s::text, %s::boolean)",
                page_size=1000,
            )

        self.db.run(write)
