"""The library over real HTTP: a real gateway with phash, color and image_text (a tiny random CLIP)
as processes, a real catalog, and photos made here carrying EXIF capture times and GPS positions
(ambience_support/library.py: home in Lisbon, a weekend in Paris with a video, a week in Porto,
the same May day in earlier years, photos without a place or any EXIF, a copy).

One stack for the module: tests that add or delete use ids of their own and put things back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest

from ambience_support.library import LISBON, TRIP_LIBRARY, PlannedPhoto, add_planned, with_exif
from ambience_support.media import scene
from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack, wait_complete

#: Left out of day-to-day runs (pytest -m "not slow"): a library of planned photos through a stack.
pytestmark = pytest.mark.slow

ENV = {
    "AMBIENCE_GATEWAY_EXPLORE_SOURCES": json.dumps(["color"]),
    "AMBIENCE_GATEWAY_SIMILAR_DISTANCE": "0",
    # generated scenes are 250+ bits from each other; a half-size copy far less from its source
    "AMBIENCE_GATEWAY_DUPLICATE_DISTANCE": "120",
    "AMBIENCE_GATEWAY_LIBRARY_TEXT_HITS": "6",
}
BY_ID = {p.image_id: p for p in TRIP_LIBRARY}
PARIS_IDS = [11, 12, 13, 14, 15]
PORTO_IDS = list(range(21, 28))


def get(url: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(url + path, params=params, timeout=60)


def ok(url: str, path: str, **params: Any) -> Any:
    r = get(url, path, **params)
    assert r.status_code == 200, r.text
    return r.json()


def every_page(url: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    images, cursor = [], None
    while True:
        page = ok(url, "/library", limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["images"]) <= limit
        images += page["images"]
        cursor = page["next"]
        if cursor is None:
            return images


def ids(images: list[dict[str, Any]]) -> list[int]:
    return [i["image_id"] for i in images]


def newest_first(photos: list[PlannedPhoto], added_after: float) -> list[int]:
    """The order the library must give: capture time, else the add (all after the timed ones
    here: added today), newest first, the larger id first among equals."""
    timed = sorted((p for p in photos if p.taken is not None), key=lambda p: (p.taken, p.image_id))
    untimed = sorted(p.image_id for p in photos if p.taken is None)
    assert added_after > 0
    return [*reversed(untimed), *(p.image_id for p in reversed(timed))]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("library"), pg_server, ["phash", "color", "image_text"], ENV)
    try:
        for photo in TRIP_LIBRARY:
            add_planned(st.url, photo)
            if photo.taken is None:
                time.sleep(0.01)  # images without a time are ordered by when they were added
        wait_complete(st.url, list(BY_ID), timeout=180)
        yield st
    finally:
        st.stop()


def sql(stack: GatewayStack, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg2.connect(stack.dsn) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


# ---- the library, its order and its pages ------------------------------------------------------


def test_every_image_newest_first_in_pages(stack: GatewayStack) -> None:
    images = every_page(stack.url, limit=4)
    assert ids(images) == newest_first(TRIP_LIBRARY, added_after=1)
    first = {i["image_id"]: i for i in images}
    assert first[12] == {
        "image_id": 12,
        "taken_at": "2024-05-18T10:00:00",
        "captured": True,
        "width": 400,
        "height": 300,
        "kind": "photo",
        "place": "Paris, France",
    }
    assert first[15]["kind"] == "video" and first[15]["taken_at"] == "2024-05-18T15:00:00"
    assert first[41]["place"] is None and first[41]["captured"] is True
    # no EXIF: still in the library, at the time it was added
    assert first[42]["captured"] is False and first[42]["place"] is None
    assert first[42]["taken_at"][:4] >= "2025"
    assert first[1]["place"] == "Lisbon, Portugal" and first[21]["place"] == "Porto, Portugal"


def test_pages_stay_stable_while_adds_arrive(stack: GatewayStack) -> None:
    url = stack.url
    before = newest_first(TRIP_LIBRARY, added_after=1)
    seen: list[int] = []
    page = ok(url, "/library", limit=5)
    seen += ids(page["images"])
    # while paging: an image newer than everything (added now, no EXIF) and one older than the
    # cursor (taken in 2023) arrive; neither shifts what the next pages hold
    newer = PlannedPhoto(61, None, None, "new")
    older = PlannedPhoto(62, BY_ID[32].taken.replace(month=1), LISBON, "new")  # type: ignore[union-attr]
    for photo in (newer, older):
        add_planned(url, photo)
    wait_complete(url, [61, 62])
    try:
        cursor = page["next"]
        while cursor:
            page = ok(url, "/library", limit=5, cursor=cursor)
            seen += ids(page["images"])
            cursor = page["next"]
        assert len(seen) == len(set(seen))  # every image once
        assert 61 not in seen  # it landed before the cursor
        # the older one where it belongs: after the cursor, before the oldest photo (31, 2022)
        assert seen == [*before[:-1], 62, 31]
    finally:
        for image_id in (61, 62):
            httpx.post(url + "/delete_all_image_features", json={"image_id": image_id}, timeout=60)
    assert 61 not in ids(every_page(url, limit=100)) and 62 not in ids(every_page(url, limit=100))


def test_months_for_the_scrubber(stack: GatewayStack) -> None:
    months = ok(stack.url, "/library/months")
    counts = {m["month"]: m["count"] for m in months["months"]}
    assert counts["2024-05"] == 8 + 5 + 1 + 1  # home, Paris, the photo without a place, the copy
    assert counts["2024-06"] == 2 + 7
    assert counts["2023-05"] == 1 and counts["2022-05"] == 1
    assert months["total"] == len(TRIP_LIBRARY) == sum(counts.values())
    assert [m["month"] for m in months["months"]] == sorted(counts, reverse=True)
    june = ok(stack.url, "/library/months", country="PT", **{"from": "2024-06"})
    assert {m["month"]: m["count"] for m in june["months"]} == {"2024-06": 9}


# ---- filters ------------------------------------------------------------------------------------


def test_each_filter(stack: GatewayStack) -> None:
    url = stack.url
    assert sorted(ids(every_page(url, 100, country="FR"))) == PARIS_IDS
    assert sorted(ids(every_page(url, 100, country="pt", city="Porto"))) == PORTO_IDS
    assert sorted(ids(every_page(url, 100, city="Paris", region="Île-de-France"))) == PARIS_IDS
    assert sorted(ids(every_page(url, 100, **{"from": "2024-05-17", "to": "2024-05-19"}))) == PARIS_IDS
    assert ids(every_page(url, 100, kind="video")) == [15]
    assert 15 not in ids(every_page(url, 100, kind="photo"))
    assert sorted(ids(every_page(url, 100, duplicates=1))) == [3, 51]
    # a month as a range: all of it
    may_2022 = every_page(url, 100, **{"from": "2022-05", "to": "2022-05"})
    assert ids(may_2022) == [31]


def test_filters_combine(stack: GatewayStack) -> None:
    url = stack.url
    june = {"from": "2024-06-01", "to": "2024-06-30"}
    assert ids(every_page(url, 100, country="PT", **june)) == [10, 9, *reversed(PORTO_IDS)]
    assert ids(every_page(url, 100, country="PT", city="Lisbon", **june)) == [10, 9]
    assert ids(every_page(url, 100, country="FR", kind="video", **{"from": "2024-05-18"})) == [15]
    assert ids(every_page(url, 100, country="FR", duplicates=1)) == []
    assert ids(every_page(url, 100, city="Lisbon", duplicates=1, **{"to": "2024-05-06"})) == [51, 3]


def test_text_filter_is_the_clip_hits_in_date_order(stack: GatewayStack) -> None:
    url = stack.url
    hits = httpx.post(
        url + "/image_text_features_get_similar_images_by_text",
        json={"text": "a city street", "k": 6},
        timeout=60,
    ).json()
    wanted = {h["image_id"] for h in hits}
    assert len(wanted) == 6  # LIBRARY_TEXT_HITS: the filter keeps as many
    found = ids(every_page(url, 2, text="a city street"))
    everything = ids(every_page(url, 100))
    assert found == [i for i in everything if i in wanted]
    in_france = ids(every_page(url, 100, text="a city street", country="FR"))
    assert in_france == [i for i in found if i in PARIS_IDS]


def test_the_people_filter_needs_the_people_feature(stack: GatewayStack) -> None:
    """This stack runs no faces service: a people filter is refused, naming why (the filter over
    the people tables is tests/gateway/test_library_store.py's)."""
    r = get(stack.url, "/library", people="1")
    assert r.status_code == 422 and "people feature" in r.json()["detail"]
    assert get(stack.url, "/library/months", people="1").status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"limit": 0},
        {"limit": 100_000},
        {"from": "2024-13"},
        {"from": "2024-06-02", "to": "2024-06-01"},
        {"to": "yesterday"},
        {"country": "Portugal"},
        {"kind": "gif"},
        {"people": "ana"},
        {"text": "a street", "text_source": "ocr"},  # OCR is not enabled in this stack
        {"text": "a street", "text_source": "both"},
        {"text": " "},
    ],
)
def test_bad_parameters_are_422(stack: GatewayStack, params: dict[str, Any]) -> None:
    r = get(stack.url, "/library", **params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


# ---- places -------------------------------------------------------------------------------------


def test_places_named_and_counted(stack: GatewayStack) -> None:
    info = httpx.post(stack.url + "/image_info", json={"image_ids": [12, 21, 41, 42]}, timeout=30).json()
    assert info["12"]["place"] == {
        "city": "Paris",
        "region": "Île-de-France",
        "country": "France",
        "country_code": "FR",
        "at_sea": False,
        "name": "Paris, Île-de-France, France",
    }
    assert info["21"]["place"]["city"] == "Porto" and info["21"]["place"]["country_code"] == "PT"
    assert info["41"]["place"] is None and info["42"]["place"] is None
    places = ok(stack.url, "/places")
    countries = {c["country_code"]: c for c in places["countries"]}
    assert [c["country_code"] for c in places["countries"]] == ["PT", "FR"]  # most photos first
    assert countries["FR"]["count"] == 5 and [c["city"] for c in countries["FR"]["cities"]] == ["Paris"]
    pt = {c["city"]: c["count"] for c in countries["PT"]["cities"]}
    assert pt == {"Lisbon": 13, "Porto": 7}
    assert (
        places["without_position"] == 3 and places["not_placed"] == 0 and places["total"] == len(TRIP_LIBRARY)
    )
    points = ok(stack.url, "/places/points")["points"]
    assert sum(p["count"] for p in points) == len(TRIP_LIBRARY) - 3
    lisbon = next(p for p in points if p["city"] == "Lisbon")
    assert (lisbon["lat"], lisbon["lon"]) == pytest.approx(LISBON, abs=0.01) and lisbon["count"] == 13


def test_backfill_makes_rows_and_places_for_images_added_before(stack: GatewayStack) -> None:
    url = stack.url
    # as a library upgraded from a gateway without it: rows missing, places not resolved
    sql(stack, "DELETE FROM library_images WHERE image_id IN (11, 12, 41)")
    sql(stack, "UPDATE library_images SET placed = false, city = NULL, country = NULL WHERE image_id = 21")
    assert ok(url, "/places")["not_placed"] == 1
    assert 12 not in ids(every_page(url, 100))
    r = httpx.post(url + "/places/backfill", timeout=30)
    assert r.status_code == 202 and r.json()["status"] == "running"
    deadline = time.monotonic() + 60
    while (status := get(url, "/places/backfill")).status_code == 202:
        assert time.monotonic() < deadline
        assert status.json()["progress"]["total"] == 4
        time.sleep(0.1)
    assert status.json() == {
        "status": "idle",
        "last": {"rows_added": 3, "placed": 3, "seconds": status.json()["last"]["seconds"]},
    }
    images = {i["image_id"]: i for i in every_page(url, 100)}
    assert images[12]["place"] == "Paris, France" and images[21]["place"] == "Porto, Portugal"
    assert images[41]["captured"] is True and images[41]["place"] is None
    assert ok(url, "/places")["not_placed"] == 0


def test_backfill_from_the_command_line(stack: GatewayStack, capsys: pytest.CaptureFixture[str]) -> None:
    from ambience.places import backfill

    sql(stack, "DELETE FROM library_images WHERE image_id = 13")
    assert backfill(stack.url) == 0
    assert capsys.readouterr().out.strip() == "places: 1 library rows added, 1 positions placed"
    assert next(i for i in every_page(stack.url, 100) if i["image_id"] == 13)["place"] == "Paris, France"


# ---- moments that know time and place ----------------------------------------------------------


def test_trips_found_with_titles_and_covers(stack: GatewayStack) -> None:
    found = ok(stack.url, "/trips")
    assert found["home"]["latitude"] == pytest.approx(LISBON[0], abs=0.05)
    assert [t["title"] for t in found["trips"]] == ["Porto, 3–9 June 2024", "Paris, 17–19 May 2024"]
    porto, paris = found["trips"]
    assert porto["members"] == PORTO_IDS and porto["cover"] in PORTO_IDS and porto["countries"] == ["PT"]
    assert sorted(paris["members"]) == PARIS_IDS and paris["cover"] in PARIS_IDS
    assert paris["distance_km"] == pytest.approx(1450, abs=30)
    assert [len(p["members"]) for p in porto["parts"]] == [7]  # a week, one event


def test_a_trip_with_its_visual_moments(stack: GatewayStack) -> None:
    trips = ok(stack.url, "/trips")["trips"]
    paris = next(t for t in trips if t["place"] == "Paris")
    for granularity in (0.2, 1.0):
        trip = ok(stack.url, f"/trips/{paris['trip']}", granularity=granularity)
        assert trip["title"] == "Paris, 17–19 May 2024" and trip["moments_from"] == "color"
        members = [m for moment in trip["moments"] for m in moment["members"]]
        assert sorted(members) == PARIS_IDS  # each member in one sub-moment
        assert all(m["representative"] == m["members"][0] for m in trip["moments"])
    assert len(trip["moments"]) == 5  # granularity 1: every photo its own moment
    assert get(stack.url, "/trips/20240517-999").status_code == 404
    assert get(stack.url, f"/trips/{paris['trip']}", source="ocr").status_code == 422


def test_events_and_the_photos_without_time_or_place(stack: GatewayStack) -> None:
    events = ok(stack.url, "/events", limit=100)
    titles = [e["title"] for e in events["events"]]
    assert "Porto, 3–9 June 2024" in titles and "Paris, 17–19 May 2024" in titles
    assert "Lisbon, 12 June 2024" in titles
    in_events = {m for e in events["events"] for m in e["members"]}
    assert {42, 43}.isdisjoint(in_events) and 41 in in_events  # no time: in no event
    # ... but in today's visual moments, as every image
    moments = httpx.post(stack.url + "/moments", json={"granularity": 0.5}, timeout=60).json()
    in_moments = {m for c in moments["moments"] for m in c["members"]}
    assert in_moments == set(BY_ID)
    assert ok(stack.url, "/events", limit=2)["total"] == events["total"] >= 15
    assert len(ok(stack.url, "/events", limit=2)["events"]) == 2


def test_on_this_day_across_years(stack: GatewayStack) -> None:
    memories = ok(stack.url, "/on_this_day", date="2024-05-14")
    assert [(y["year"], y["years_ago"], y["members"]) for y in memories["years"]] == [
        (2023, 1, [32]),
        (2022, 2, [31]),
    ]
    assert memories["window_days"] == 3
    later = ok(stack.url, "/on_this_day", date="2025-05-18", window_days=1)["years"]
    assert [(y["year"], sorted(y["members"])) for y in later] == [(2024, PARIS_IDS)]
    assert ok(stack.url, "/on_this_day", date="2024-02-29")["years"] == []
    assert get(stack.url, "/on_this_day", date="14 May").status_code == 422
    assert get(stack.url, "/on_this_day", date="2024-05-14", window_days=400).status_code == 422


def test_a_deleted_image_leaves_the_library_and_its_trip(stack: GatewayStack) -> None:
    url = stack.url
    photo = PlannedPhoto(71, BY_ID[22].taken, BY_ID[22].gps, "porto")
    add_planned(url, photo)
    wait_complete(url, [71])
    assert 71 in ok(url, "/trips")["trips"][0]["members"]
    httpx.post(url + "/delete_all_image_features", json={"image_id": 71}, timeout=60)
    assert 71 not in ids(every_page(url, 100))
    assert ok(url, "/trips")["trips"][0]["members"] == PORTO_IDS


def test_with_exif_writes_what_the_gateway_reads(tmp_path: Path) -> None:
    from datetime import datetime

    from services.common.media.metadata import read_media_metadata

    found = read_media_metadata(
        with_exif(scene(1, (64, 48)), datetime(2024, 5, 1, 10, 0), (-33.8688, 151.2093))
    )
    assert found["captured_at"] == datetime(2024, 5, 1, 10, 0)
    assert (found["gps_latitude"], found["gps_longitude"]) == pytest.approx((-33.8688, 151.2093), abs=1e-4)
