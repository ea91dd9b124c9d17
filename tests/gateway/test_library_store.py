"""The library's pieces without HTTP: the cursor and filters (gateway/library/query.py), on this day
read from the capture-time index against gateway/trips.py's own, rows kept only for added images,
and trips' visual sub-moments (gateway/library/moments.py). A real PostgreSQL database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from gateway.library import schema as library_schema
from gateway.library.moments import restrict
from gateway.library.query import (
    LibraryFilter,
    LibraryRow,
    PageKey,
    decode_cursor,
    encode_cursor,
    local_wall_clock,
    parse_date,
    parse_people,
    row_from_facts,
)
from gateway.library.store import LibraryStore, PeopleUnavailable
from gateway.people import schema as people_schema
from gateway.places import Place
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.trips import Capture, on_this_day
from services.common.postgres.database import Database

ADDED = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(pg_dsn: str) -> LibraryStore:
    db = Database(
        pg_dsn, migrations={COMPONENT: MIGRATIONS, library_schema.COMPONENT: library_schema.MIGRATIONS}
    )
    return LibraryStore(db)


def row(image_id: int, taken: datetime) -> LibraryRow:
    return row_from_facts(image_id, {"captured_at": taken}, ADDED, None)


def test_the_cursor_round_trips_and_refuses_anything_else() -> None:
    key = PageKey(datetime(2024, 5, 17, 19, 0, 0, 250000), 11)
    assert decode_cursor(encode_cursor(key)) == key
    # a key with a time zone or a negative id is none a page gives
    zoned = encode_cursor(PageKey(datetime(2024, 5, 17, tzinfo=UTC), 1))
    for bad in (
        "",
        "x",
        "not base64!",
        encode_cursor(key)[:-3],
        zoned,
        encode_cursor(PageKey(key.taken_at, -1)),
    ):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def test_dates_months_and_people_parse() -> None:
    assert parse_date("2024-02", "from") == date(2024, 2, 1)
    assert parse_date("2024-02", "to") == date(2024, 2, 29)
    assert parse_date("2023-12", "to") == date(2023, 12, 31)
    assert parse_date("2024-05-12", "to") == date(2024, 5, 12)
    assert parse_people("3, 1,3") == (3, 1)
    for bad in ("2024-5", "2024/05/01", "May"):
        with pytest.raises(ValueError, match="to must be"):
            parse_date(bad, "to")
    with pytest.raises(ValueError):
        parse_people("1;2")
    with pytest.raises(ValueError):
        LibraryFilter(people=tuple(range(21)))


def test_a_row_from_facts() -> None:
    paris = Place("Paris", "Île-de-France", "France", "FR", 0.4, False)
    aware = datetime(2024, 5, 18, 15, 0, tzinfo=UTC).astimezone()
    made = row_from_facts(
        5, {"captured_at": aware, "gps_latitude": 48.85, "gps_longitude": 2.35}, ADDED, paris
    )
    assert made.taken_at == aware.replace(tzinfo=None) and made.captured and made.place == paris
    assert made.as_json()["place"] == "Paris, France"
    # no time: the add's, on this machine's wall clock; (0, 0) is no position
    blank = row_from_facts(6, {"gps_latitude": 0.0, "gps_longitude": 0.0, "kind": "video"}, ADDED, paris)
    assert blank.taken_at == local_wall_clock(ADDED) and not blank.captured
    assert blank.latitude is None and blank.place is None and blank.placed and blank.kind == "video"
    assert (
        row_from_facts(7, {"gps_latitude": 48.0, "gps_longitude": 2.0}, ADDED, None, placed=False).placed
        is False
    )


def test_on_this_day_from_the_index_is_the_same_as_from_every_capture(store: LibraryStore) -> None:
    rng = np.random.default_rng(5)
    start = datetime(2016, 12, 20)
    taken = [start + timedelta(minutes=int(m)) for m in rng.integers(0, 9 * 365 * 1440, 3000)]
    # year ends and leap days, where windows wrap
    taken += [datetime(2020, 2, 29, 12), datetime(2019, 12, 31, 23, 59), datetime(2021, 1, 1, 0, 0)]
    store.record([row(i, t) for i, t in enumerate(taken)])
    store.record([row_from_facts(10_000, {}, ADDED, None)])  # no capture time: never a memory
    captures = [Capture(i, t) for i, t in enumerate(taken)]
    for day in (date(2025, 1, 2), date(2024, 2, 29), date(2025, 3, 1), date(2024, 12, 30), date(2017, 1, 1)):
        for window in (0, 3, 10):
            expected = on_this_day(day, captures, window)
            found = store.on_this_day(day, window)
            assert [(y.year, y.years_ago, y.anchor, y.members) for y in found] == [
                (y.year, y.years_ago, y.anchor, y.members) for y in expected
            ], (day, window)
    assert store.on_this_day(date(2016, 12, 21), 3) == []


def test_rows_kept_only_for_images_the_ledger_holds_as_added(store: LibraryStore) -> None:
    store.db.run(
        lambda cur: cur.execute("INSERT INTO gateway_images (image_id, op) VALUES (1, 'add'), (2, 'delete')")
    )
    written = store.record(
        [row(1, datetime(2024, 1, 1)), row(2, datetime(2024, 1, 2)), row(3, datetime(2024, 1, 3))], True
    )
    assert written == 1 and list(store.rows([1, 2, 3])) == [1]


def test_a_page_ends_where_the_next_begins(store: LibraryStore) -> None:
    same = datetime(2024, 5, 1, 12, 0)
    store.record([row(i, same) for i in range(1, 8)] + [row(9, same + timedelta(seconds=1))])
    seen, after = [], None
    while True:
        page, after = store.page(LibraryFilter(), after, 3)
        seen += [r.image_id for r in page]
        if after is None:
            break
    assert seen == [9, 7, 6, 5, 4, 3, 2, 1]  # ties broken by id, each once
    assert store.months(LibraryFilter()) == [("2024-05", 8)]


def test_visual_moments_restricted_to_a_trip() -> None:
    trip = [10, 11, 12, 13, 14]
    order = {m: n for n, m in enumerate(trip)}
    moments = [[12, 99, 10], [50, 51], [13, 11], [98]]
    # in the order they happened (by their earliest member), the ones no moment holds last
    assert restrict(moments, trip, order) == [[12, 10], [13, 11], [14]]
    assert restrict([], trip, order) == [trip]


def test_the_people_filter_over_the_people_tables(pg_dsn: str) -> None:
    """The images holding every person asked, in the people feature's own tables (Ana in 1, 2
    and 11; Rui in 2 and 11), as its step fills them; an id no person has is a ValueError (422)."""
    migrations = {
        COMPONENT: MIGRATIONS,
        library_schema.COMPONENT: library_schema.MIGRATIONS,
        people_schema.COMPONENT: people_schema.MIGRATIONS,
    }
    db = Database(pg_dsn, migrations=migrations)
    store = LibraryStore(db, people=True)
    start = datetime(2024, 5, 1, 10)
    store.record([row(i, start + timedelta(hours=i)) for i in (1, 2, 3, 11)])

    def fill(cur: Any) -> None:
        cur.execute("INSERT INTO people (person_id, name, generation) VALUES (1, 'Ana', 1), (2, 'Rui', 1)")
        for image_id, index, person in ((1, 0, 1), (2, 0, 1), (2, 1, 2), (11, 0, 2), (11, 1, 1)):
            cur.execute(
                "INSERT INTO people_faces (image_id, face_index, person_id, box, size, score, descriptor,"
                " generation) VALUES (%s, %s, %s, ARRAY[0, 0, 1, 1]::real[], 1, 1, '', 1)",
                (image_id, index, person),
            )

    db.run(fill)

    def page(people: tuple[int, ...]) -> list[int]:
        return [r.image_id for r in store.page(LibraryFilter(people=people), None, 100)[0]]

    assert page((1,)) == [11, 2, 1]
    assert page((1, 2)) == [11, 2]
    with pytest.raises(ValueError, match="7"):
        page((1, 7))
    with pytest.raises(PeopleUnavailable, match="people feature"):
        LibraryStore(db, people=False).page(LibraryFilter(people=(1,)), None, 10)
