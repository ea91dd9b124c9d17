"""The library, places and trips views in a real browser (Debian's Chromium driven by Playwright)
against a real stack: phash and color services, the gateway, PostgreSQL, and photos made here with
EXIF times and GPS positions (ambience_support/library.py: home in Lisbon, a weekend in Paris, a
week in Porto, ...), plus one taken a year ago today (on this day).

Skips with the reason when Chromium or Playwright is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from ambience_support.browser import Browser, launch_browser
from ambience_support.library import LISBON, TRIP_LIBRARY, PlannedPhoto, add_planned
from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack, wait_complete

#: Left out of day-to-day runs (pytest -m "not slow"): Chromium over a stack.
pytestmark = pytest.mark.slow

ENV = {
    "AMBIENCE_GATEWAY_EXPLORE_SOURCES": json.dumps(["color"]),
    "AMBIENCE_GATEWAY_DUPLICATE_DISTANCE": "120",
}
A_YEAR_AGO = PlannedPhoto(91, (datetime.now() - timedelta(days=365)).replace(hour=12), LISBON, "memory")
DOOMED = PlannedPhoto(92, datetime(2024, 5, 2, 12, 0), None, "to delete")
PHOTOS = [*TRIP_LIBRARY, A_YEAR_AGO, DOOMED]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser(viewport={"width": 1280, "height": 600}) as b:
        yield b


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("library-page"), pg_server, ["phash", "color"], ENV)
    try:
        for photo in PHOTOS:
            add_planned(st.url, photo)
        wait_complete(st.url, [p.image_id for p in PHOTOS], timeout=180)
        yield st
    finally:
        st.stop()


def tiles(page) -> list[int]:  # type: ignore[no-untyped-def]
    return [
        int(t)
        for t in page.eval_on_selector_all(
            "#library-grid .lib-tile", "els => els.map(e => e.dataset.imageId)"
        )
    ]


def in_view(page, image_id: int) -> bool:  # type: ignore[no-untyped-def]
    box = page.locator(f"#library-grid .lib-tile[data-image-id='{image_id}']").bounding_box()
    return box is not None and 0 <= box["y"] < 600


def test_the_library_is_the_first_view_and_lays_out_only_what_shows(
    browser: Browser, stack: GatewayStack
) -> None:
    page = browser.open(stack.url + "/")
    page.wait_for_selector("#library-grid .lib-tile")
    assert page.get_attribute("nav a[aria-current=page]", "data-view") == "library"
    assert page.text_content("#library-count") == f"{len(PHOTOS)} photos and videos"
    shown = tiles(page)
    # the newest first (the files without EXIF were added last of the undated: today), and only the
    # first screens exist: the 2022 photo is far down
    assert 43 in shown and 31 not in shown
    headings = page.eval_on_selector_all("#library-grid .month", "els => els.map(e => e.dataset.month)")
    assert headings[0] == datetime.now().strftime("%Y-%m")
    # the scrubber's list jumps to May 2022
    page.select_option("#jump-month", "2022-05")
    page.wait_for_function("document.querySelector(\"#library-grid .lib-tile[data-image-id='31']\") !== null")
    page.wait_for_timeout(200)
    assert in_view(page, 31) and 43 not in tiles(page)
    # and the bar beside the grid: its first mark is the newest year; pressed at its foot, the oldest
    page.locator("#scrubber .tick.year").first.click()
    page.wait_for_function("document.querySelector(\"#library-grid .lib-tile[data-image-id='43']\") !== null")
    page.evaluate("window.scrollTo(0, 800)")  # the bar sticks below the header once scrolled
    page.wait_for_timeout(100)
    bar = page.locator("#scrubber").bounding_box()
    page.mouse.click(bar["x"] + bar["width"] / 2, min(bar["y"] + bar["height"], 600) - 3)
    page.wait_for_function("document.querySelector(\"#library-grid .lib-tile[data-image-id='31']\") !== null")


def test_filters_combine(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/library")
    page.wait_for_selector("#lib-country option[value=FR]", state="attached")
    page.select_option("#lib-country", "FR")
    page.wait_for_function("location.hash.includes('country=FR')")
    page.wait_for_function("document.querySelectorAll('#library-grid .lib-tile').length === 5")
    assert sorted(tiles(page)) == [11, 12, 13, 14, 15]
    page.select_option("#lib-kind", "video")
    page.wait_for_function("document.querySelectorAll('#library-grid .lib-tile').length === 1")
    assert tiles(page) == [15] and page.locator("#library-grid .lib-tile .badge").text_content() == "▶ video"
    # a date range and the copies, from a link as another view makes it
    page = browser.open(stack.url + "/#/library?duplicates=1&country=PT&to=2024-05-31")
    page.wait_for_function("document.querySelectorAll('#library-grid .lib-tile').length === 2")
    assert tiles(page) == [51, 3]
    assert page.is_checked("#lib-dups") and page.input_value("#lib-to") == "2024-05-31"
    page.click("#lib-clear")
    page.wait_for_function(
        f"document.querySelector('#library-count').textContent.startsWith('{len(PHOTOS)} ')"
    )


def test_selection_finds_duplicates_exports_and_deletes(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/library?city=Lisbon&from=2024-05-01&to=2024-05-06")
    page.wait_for_function("document.querySelectorAll('#library-grid .lib-tile').length === 4")
    assert page.is_hidden("#selection-bar")
    for image_id in (51, 3, 2):
        page.locator(f".lib-tile[data-image-id='{image_id}'] .select").click()
    assert page.text_content("#selected-count") == "3 selected"
    page.click("#sel-duplicates")
    page.wait_for_selector("#selection-duplicates .dup-group")
    group = page.eval_on_selector_all(
        "#selection-duplicates .dup-group .thumb", "els => els.map(e => e.dataset.imageId)"
    )
    assert sorted(map(int, group)) == [3, 51]
    with page.expect_download() as download:
        page.click("#sel-csv")
    with open(download.value.path()) as csv:
        lines = csv.read().splitlines()
    assert lines[0] == '"image_id","file_name","taken","place","width","height","kind"'
    assert sorted(line.split(",")[0] for line in lines[1:]) == ['"2"', '"3"', '"51"']
    assert '"Lisbon, Portugal"' in lines[1]
    page.click("#sel-clear")
    assert page.is_hidden("#selection-bar")
    # delete everywhere: the page asks first
    page = browser.open(stack.url + "/#/library?from=2024-05-02&to=2024-05-02")
    page.wait_for_function("document.querySelectorAll('#library-grid .lib-tile').length === 1")
    page.locator(".lib-tile[data-image-id='92'] .select").click()
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#sel-delete")
    page.wait_for_selector("#library-empty")
    found = httpx.get(stack.url + "/library", params={"from": "2024-05-02", "to": "2024-05-02"}, timeout=30)
    assert found.json()["images"] == []


def test_on_this_day_on_the_first_screen(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/")
    page.wait_for_selector("#on-this-day .memory")
    year = A_YEAR_AGO.taken.year  # type: ignore[union-attr]
    assert page.get_attribute("#on-this-day .memory", "data-year") == str(year)
    assert "1 year ago" in page.text_content("#on-this-day .memory .cap")
    page.click("#on-this-day .memory")
    page.wait_for_function("location.hash.includes('from=')")
    page.wait_for_selector("#library-grid .lib-tile")
    assert tiles(page) == [91] and page.is_hidden("#on-this-day")  # a filtered library shows none


def test_places_map_and_list(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/places")
    page.wait_for_selector("#places-map[data-points]")
    # Lisbon (home, the copy and a year ago), Porto, and three spots in Paris
    assert page.get_attribute("#places-map", "data-points") == "5"
    assert page.text_content("#places-list li[data-country=PT] summary .count") == "21"
    # a point on the map: its photos, then all of them in the library
    x, y = page.evaluate("document.querySelector('#places-map').worldMap.project(41.15, -8.61)")
    box = page.locator("#places-map").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#places-picked .thumb")
    assert page.locator("#places-picked .thumb").count() == 7
    page.click("#places-open-library")
    page.wait_for_function("document.querySelectorAll('#library-grid .lib-tile').length === 7")
    assert sorted(tiles(page)) == list(range(21, 28))
    # a city of the list
    page = browser.open(stack.url + "/#/places")
    page.wait_for_selector("#places-list li[data-country=FR]")
    page.click("#places-list li[data-country=FR] summary")
    page.click("#places-list a[data-city=Paris]")
    page.wait_for_function("document.querySelectorAll('#places-picked .thumb').length === 5")


def test_a_trip_with_its_title_and_moments(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/trips")
    page.wait_for_selector("#trips .trip-card")
    titles = page.eval_on_selector_all("#trips .trip-card .title", "els => els.map(e => e.textContent)")
    assert titles == ["Porto, 3–9 June 2024", "Paris, 17–19 May 2024"]
    page.locator("#trips .trip-card", has_text="Paris").click()
    page.wait_for_selector("#trip-title")
    assert page.text_content("#trip-title") == "Paris, 17–19 May 2024"
    page.wait_for_selector("#trip-moments .trip-moment")
    members = page.eval_on_selector_all(
        "#trip-moments .trip-moment .thumb", "els => els.map(e => e.dataset.imageId)"
    )
    assert sorted(map(int, members)) == [11, 12, 13, 14, 15]
    assert "by color" in page.text_content("#trip-moment-count")
    page.click("a[href='#/trips']")
    page.click("a[href='#/trips?kind=events']")
    page.wait_for_function("(document.querySelector('#trips-count') || {}).textContent?.endsWith('events')")
    events = page.eval_on_selector_all("#trips .trip-card .title", "els => els.map(e => e.textContent)")
    assert "Porto, 3–9 June 2024" in events and "Lisbon, 12 June 2024" in events
    # the image page names the place
    page = browser.open(stack.url + "/#/image/12")
    page.wait_for_selector("dd[data-field=place] a")
    assert page.text_content("dd[data-field=place] a") == "Paris, Île-de-France, France"
