"""The library's table (gateway/library/schema.py) read and written: a row per image, pages of it
newest first under filters, the months it spans, and the captures its moments are made of.

Plain synchronous methods over a :class:`services.common.postgres.database.SqlRunner`; the app
calls them in worker threads. The places (counts, the map's points) and the backfill's reads are
gateway/library/places.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from gateway.library.query import LibraryFilter, LibraryRow, PageKey, where_clause
from gateway.places import Place
from gateway.trips import Capture, YearMemory, same_day_in
from services.common.postgres.database import Cursor, SqlRunner

ROW_COLUMNS = (
    "image_id",
    "taken_at",
    "captured",
    "added_at",
    "kind",
    "width",
    "height",
    "latitude",
    "longitude",
    "city",
    "region",
    "country",
    "country_code",
    "at_sea",
    "placed",
)
PLACE_COLUMNS = ("city", "region", "country", "country_code", "at_sea")


def place_from(city: Any, region: Any, country: Any, code: Any, at_sea: Any) -> Place | None:
    """The place of a row's columns; None when the row has none."""
    if not (city or region or country or code or at_sea):
        return None
    return Place(city, region, country, code, 0.0, bool(at_sea))


def place_values(place: Place | None) -> tuple[Any, ...]:
    if place is None:
        return (None, None, None, None, False)
    return (place.city, place.region, place.country, place.country_code, place.at_sea)


def row_values(row: LibraryRow) -> tuple[Any, ...]:
    return (
        row.image_id,
        row.taken_at,
        row.captured,
        row.added_at,
        row.kind,
        row.width,
        row.height,
        row.latitude,
        row.longitude,
        *place_values(row.place),
        row.placed,
    )


def row_from(values: tuple[Any, ...]) -> LibraryRow:
    v = dict(zip(ROW_COLUMNS, values, strict=True))
    return LibraryRow(
        image_id=int(v["image_id"]),
        taken_at=v["taken_at"],
        captured=v["captured"],
        added_at=v["added_at"],
        kind=v["kind"],
        width=v["width"],
        height=v["height"],
        latitude=v["latitude"],
        longitude=v["longitude"],
        place=place_from(*(v[c] for c in PLACE_COLUMNS)),
        placed=v["placed"],
    )


class PeopleUnavailable(Exception):
    """The people filter was asked for, but the people feature's tables are not there."""


class LibraryStore:
    """The rows of ``library_images``."""

    def __init__(self, db: SqlRunner, people: bool = True) -> None:
        """``people``: whether the people feature runs here (the faces service is enabled)."""
        self.db = db
        self.people = people

    # -- writes ---------------------------------------------------------------------------------

    def record(self, rows: list[LibraryRow], only_added: bool = False) -> int:
        """Insert or replace ``rows``; with ``only_added``, only those of images the write ledger
        holds as added (a backfill must not bring back an image deleted meanwhile: the rows of
        the ledger are locked until this commits, so a delete waits for it and then drops what it
        wrote). Returns how many were written."""
        if not rows:
            return 0
        columns = ", ".join(ROW_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ROW_COLUMNS[1:])
        sql = (
            f"INSERT INTO library_images ({columns}) VALUES ({', '.join(['%s'] * len(ROW_COLUMNS))})"
            f" ON CONFLICT (image_id) DO UPDATE SET {updates}"
        )

        def write(cur: Cursor) -> int:
            chosen = rows
            if only_added:
                cur.execute(
                    "SELECT image_id FROM gateway_images WHERE image_id = ANY(%s) AND op = 'add'"
                    " ORDER BY image_id FOR SHARE",
                    ([r.image_id for r in rows],),
                )
                added = {int(r[0]) for r in cur.fetchall()}
                chosen = [r for r in rows if r.image_id in added]
            cur.executemany(sql, [row_values(r) for r in chosen])
            return len(chosen)

        return self.db.run(write)

    def forget(self, image_id: int) -> None:
        self.db.run(lambda cur: cur.execute("DELETE FROM library_images WHERE image_id = %s", (image_id,)))

    # -- reads ----------------------------------------------------------------------------------

    def rows(self, image_ids: list[int]) -> dict[int, LibraryRow]:
        def read(cur: Cursor) -> dict[int, LibraryRow]:
            cur.execute(
                f"SELECT {', '.join(ROW_COLUMNS)} FROM library_images WHERE image_id = ANY(%s)", (image_ids,)
            )
            return {int(r[0]): row_from(r) for r in cur.fetchall()}

        return self.db.run(read)

    def page(
        self, f: LibraryFilter, after: PageKey | None, limit: int
    ) -> tuple[list[LibraryRow], PageKey | None]:
        """Up to ``limit`` rows after ``after`` (newest first) and the key of the next page (None
        at the end)."""
        where, params = where_clause(f, after)

        def read(cur: Cursor) -> tuple[list[LibraryRow], PageKey | None]:
            self._check_people(cur, f)
            cur.execute(
                f"SELECT {', '.join('l.' + c for c in ROW_COLUMNS)} FROM library_images l WHERE {where}"
                " ORDER BY l.taken_at DESC, l.image_id DESC LIMIT %s",
                (*params, limit + 1),
            )
            found = [row_from(r) for r in cur.fetchall()]
            more = len(found) > limit
            found = found[:limit]
            last = found[-1] if more and found else None
            return found, PageKey(last.taken_at, last.image_id) if last else None

        return self.db.run(read)

    def months(self, f: LibraryFilter) -> list[tuple[str, int]]:
        """``("2024-05", count)`` per month holding images, newest first."""
        where, params = where_clause(f)

        def read(cur: Cursor) -> list[tuple[str, int]]:
            self._check_people(cur, f)
            # no ORDER BY: hashing a few hundred months beats sorting every row (benchmarks.md)
            cur.execute(
                "SELECT date_trunc('month', l.taken_at), count(*) FROM library_images l"
                f" WHERE {where} GROUP BY 1",
                params,
            )
            return [(f"{m:%Y-%m}", int(n)) for m, n in sorted(cur.fetchall(), reverse=True)]

        return self.db.run(read)

    def _check_people(self, cur: Cursor, f: LibraryFilter) -> None:
        """Raise :class:`PeopleUnavailable` when ``f`` names people and the tables are not there,
        ValueError naming the ids no person has."""
        if not f.people:
            return
        cur.execute("SELECT to_regclass('people_faces') IS NOT NULL AND to_regclass('people') IS NOT NULL")
        if not self.people or not cur.fetchone()[0]:
            raise PeopleUnavailable(
                "the people filter needs the people feature (the faces service and its people tables), "
                "which is not enabled here"
            )
        cur.execute("SELECT person_id FROM people WHERE person_id = ANY(%s)", (list(f.people),))
        known = {int(r[0]) for r in cur.fetchall()}
        unknown = [p for p in f.people if p not in known]
        if unknown:
            raise ValueError(f"no person has the id {', '.join(map(str, unknown))}")

    def signature(self) -> tuple[Any, ...]:
        """A value that changes whenever a row is added, removed or placed (the moments' cache
        key): one pass over the table's index."""

        def read(cur: Cursor) -> tuple[Any, ...]:
            cur.execute(
                "SELECT count(*), coalesce(sum(image_id), 0), count(*) FILTER (WHERE placed),"
                " max(added_at) FROM library_images"
            )
            return tuple(cur.fetchone())

        return self.db.run(read)

    def captures(self) -> list[Capture]:
        """Every image with a capture time, with its position and place (trips, events, on this
        day are made of these)."""

        def read(cur: Cursor) -> list[Capture]:
            cur.execute(
                "SELECT image_id, taken_at, latitude, longitude, city, region, country, country_code, at_sea"
                " FROM library_images WHERE captured"
            )
            return [
                Capture(int(r[0]), r[1], r[2], r[3], place_from(*r[4:9]) if r[2] is not None else None)
                for r in cur.fetchall()
            ]

        return self.db.run(read)

    def on_this_day(self, day: date, window_days: int) -> list[YearMemory]:
        """Photos taken within ``window_days`` of ``day``'s date in each earlier year, newest year
        first (as :func:`gateway.trips.on_this_day`, read by ranges of the capture-time index
        rather than from every capture)."""
        if not 0 <= window_days <= 182:
            raise ValueError("window_days must be within [0, 182]")

        def read(cur: Cursor) -> list[YearMemory]:
            cur.execute(
                "SELECT taken_at FROM library_images WHERE captured ORDER BY taken_at, image_id LIMIT 1"
            )
            first = cur.fetchone()
            if first is None:
                return []
            # a window can reach back into the year before the first photo's (1 January's does)
            # (never before year 2: a window in year 1 would reach before the calendar's start)
            anchors = {y: same_day_in(day, y) for y in range(day.year - 1, max(1, first[0].year - 2), -1)}
            if not anchors:
                return []
            midnight = datetime.min.time()
            windows = [
                (
                    year,
                    datetime.combine(anchor - timedelta(days=window_days), midnight),
                    datetime.combine(anchor + timedelta(days=window_days + 1), midnight),
                )
                for year, anchor in anchors.items()
            ]
            cur.execute(
                "SELECT w.year, l.image_id FROM (SELECT unnest(%s::int[]) AS year,"
                " unnest(%s::timestamp[]) AS lo, unnest(%s::timestamp[]) AS hi) w"
                " JOIN library_images l ON l.taken_at >= w.lo AND l.taken_at < w.hi"
                " WHERE l.captured ORDER BY w.year DESC, l.taken_at, l.image_id",
                ([w[0] for w in windows], [w[1] for w in windows], [w[2] for w in windows]),
            )
            out: dict[int, YearMemory] = {}
            for year, image_id in cur.fetchall():
                memory = out.setdefault(year, YearMemory(year, day.year - year, anchors[year]))
                memory.members.append(int(image_id))
            return list(out.values())

        return self.db.run(read)

    def count(self) -> int:
        def read(cur: Cursor) -> int:
            cur.execute("SELECT count(*) FROM library_images")
            return int(cur.fetchone()[0])

        return self.db.run(read)
