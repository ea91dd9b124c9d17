"""The People view in a real browser (Debian's Chromium driven by Playwright) against a real stack:
the faces service with its real weights, the gateway, PostgreSQL, and three people every test
machine has (ambience_support/people_photos.py). Face crops and counts, a name edited in place,
two people selected and merged, a person hidden behind the toggle, a person's page with their
photos, and the face boxes with names on the image page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ambience_support.browser import Browser, launch_browser
from ambience_support.people_photos import VARIANTS, people, variant
from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack

pytest.importorskip("dlib")
if len(people()) < 3:
    pytest.skip("the People view's test needs scikit-image's sample pictures", allow_module_level=True)

FIRST = {"hopper": 10, "astronaut": 20, "camera": 30}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as b:
        yield b


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("people-page"), pg_server, ["faces"])
    try:
        ids = []
        for name, first in FIRST.items():
            for v, which in enumerate(VARIANTS):
                r = httpx.post(
                    st.url + "/calculate_all_image_features",
                    files={"image": (f"{name}-{which}.jpg", variant(name, which))},
                    data={"image_id": str(first + v)},
                    timeout=120,
                )
                assert r.status_code == 200, r.text
                ids.append(first + v)
        st.wait_complete(ids, timeout=180)
        yield st
    finally:
        st.stop()


def person_of(stack: GatewayStack, image_id: int) -> Any:
    info = httpx.post(stack.url + "/image_info", json={"image_ids": [image_id]}).json()
    return info[str(image_id)]["faces"][0]["person_id"]


def test_the_people_view_names_merges_hides_and_shows_a_person(browser: Browser, stack: GatewayStack) -> None:
    hopper, astronaut, camera = (person_of(stack, first) for first in FIRST.values())
    page = browser.open(stack.url + "/#/people")
    page.wait_for_selector("#people .person", timeout=30_000)
    assert page.locator("#people .person").count() == 3
    # every card shows its face crop, loaded
    page.wait_for_function(
        "[...document.querySelectorAll('#people .person .face img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    card = f"#people .person[data-person-id='{hopper}']"
    assert "4 photos" in page.text_content(f"{card} .cap")
    # a name edited in place
    page.fill(f"{card} input.name", "Grace Hopper")
    page.press(f"{card} input.name", "Enter")
    page.wait_for_selector("#toast:not([hidden])")
    assert httpx.get(f"{stack.url}/people/{hopper}").json()["name"] == "Grace Hopper"
    # two selected and merged (into the one listed first: the one with most faces)
    page.check(f"#people .person[data-person-id='{astronaut}'] input.select")
    assert page.is_disabled("#merge-selected")
    page.check(f"#people .person[data-person-id='{camera}'] input.select")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#merge-selected")
    page.wait_for_function("document.querySelectorAll('#people .person').length === 2")
    merged = httpx.get(f"{stack.url}/people/{camera}").json()["person_id"]
    assert merged in (astronaut, camera) and httpx.get(f"{stack.url}/people/{merged}").json()["faces"] == 8
    # hidden: gone from the view, back behind the toggle
    page.click(f"#people .person[data-person-id='{merged}'] button.hide")
    page.wait_for_selector(f"#people .person.hidden-person[data-person-id='{merged}']")
    page.reload()
    page.wait_for_selector("#people .person")
    assert page.locator("#people .person").count() == 1
    page.check("#show-hidden")
    page.wait_for_selector(f"#people .person.hidden-person[data-person-id='{merged}']")
    # a person's page: their photos
    page.click(f"#people .person[data-person-id='{hopper}'] a.face")
    page.wait_for_selector("#person-photos .thumb")
    assert page.locator("#person-photos .thumb").count() == len(VARIANTS)
    assert page.input_value(".person-head input.name") == "Grace Hopper"
    # the image page: the face's box with the person's name
    page.click("#person-photos .thumb >> nth=0")
    page.wait_for_selector(".faces-frame .face-box")
    assert page.text_content(".faces-frame .face-box") == "Grace Hopper"
    assert page.get_attribute(".faces-frame .face-box", "href") == f"#/person/{hopper}"
