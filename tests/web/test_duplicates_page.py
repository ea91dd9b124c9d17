"""The duplicates view in a real browser (Debian's Chromium through Playwright) against a real stack
(phash, color, the gateway, PostgreSQL): groups with their keeper and the reason, the space freed,
"Not duplicates" kept as a decision and undone, stacks drawn as piles, resolve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from PIL import ImageChops, ImageFilter

from ambience_support.browser import Browser, launch_browser
from ambience_support.images import encode
from ambience_support.media import dng, exif_block, heic, scene
from ambience_support.pg import TestServer
from ambience_support.stacks import GatewayStack, start_stack

ENV = {
    "AMBIENCE_GATEWAY_DUPLICATE_DISTANCE": "120",
    "AMBIENCE_GATEWAY_EXPLORE_SOURCES": json.dumps(["color"]),
    "AMBIENCE_GATEWAY_SIMILAR_DISTANCE": "0",
}
T = datetime(2024, 7, 14, 18, 0, 0)


def uploads() -> list[tuple[int, str, bytes]]:
    """Two copies groups (a HEIC and its JPEG export; a photo and two smaller copies), a burst of
    three frames and a RAW+JPEG pair."""
    one, two, frames, shot = (
        scene(1, (400, 300)),
        scene(2, (400, 300)),
        scene(3, (400, 300)),
        scene(4, (400, 300)),
    )
    found = [
        (1, "phone/IMG_1.HEIC", heic(one, quality=60)),
        (2, "export/IMG_1.jpg", encode(one, quality=98)),
        (3, "trip/DSC_3.jpg", encode(two, quality=95)),
        (4, "chat/DSC_3 small.jpg", encode(two.resize((200, 150)), quality=70)),
        (5, "chat/DSC_3 smaller.jpg", encode(two.resize((160, 120)), quality=60)),
    ]
    for n, (shift, blur) in enumerate(((0, 2.0), (3, 0.0), (6, 2.5))):
        frame = ImageChops.offset(frames, shift, 0)
        frame = frame.filter(ImageFilter.GaussianBlur(blur)) if blur else frame
        found.append(
            (
                10 + n,
                f"burst/IMG_{10 + n}.jpg",
                encode(frame, exif=exif_block(T, subsec=f"{3 * n + 1}0").tobytes()),
            )
        )
    found += [
        (20, "DCIM/IMG_20.DNG", dng(shot, when=T.replace(minute=5))),
        (21, "DCIM/IMG_20.JPG", encode(shot, quality=90, exif=exif_block(T.replace(minute=5)).tobytes())),
    ]
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as b:
        yield b


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("dupes-page"), pg_server, ["phash", "color"], ENV)
    try:
        with httpx.Client(timeout=60) as client:
            for image_id, name, data in uploads():
                r = client.post(
                    st.url + "/calculate_all_image_features",
                    files={"image": (name, data)},
                    data={"image_id": str(image_id)},
                )
                assert r.status_code == 200, r.text
        st.wait_complete([i for i, _, _ in uploads()], timeout=120)
        yield st
    finally:
        st.stop()


def test_groups_show_their_keeper_reason_and_space_and_a_decision_hides_one(
    browser: Browser, stack: GatewayStack
) -> None:
    page = browser.open(stack.url + "/#/duplicates?kind=copies")
    heic_group = page.wait_for_selector(".group:has([data-image-id='2'])", timeout=60_000)
    assert heic_group.get_attribute("data-keeper") == "1"
    assert heic_group.query_selector(".reason").text_content() == "Keeping #1: format: HEIC over JPEG"
    assert "frees" in heic_group.text_content()
    assert page.text_content("#group-count").startswith("2 groups · 5 images")

    page.click(".group:has([data-image-id='4']) button.not-duplicates")
    page.wait_for_selector(".group:has([data-image-id='4'])", state="detached")
    assert page.text_content("#group-count").startswith("1 groups")
    # the decision is the gateway's: a fresh page does not show the group, lists the decision
    page = browser.open(stack.url + "/#/duplicates?kind=copies")
    page.wait_for_selector("#decisions li[data-decision-id]", timeout=30_000)
    assert page.locator(".group:has([data-image-id='4'])").count() == 0
    page.click("#decisions li[data-decision-id] button.undo")
    page.wait_for_selector(".group:has([data-image-id='4'])", timeout=30_000)
    assert page.locator("#decisions li[data-decision-id]").count() == 0


def test_groups_come_a_page_at_a_time(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/duplicates?kind=copies&order=space&per=1")  # per: groups per page
    page.wait_for_selector("#group-list .group", timeout=60_000)
    assert page.locator("#group-list .group").count() == 1
    assert page.text_content("#groups-more") == "Show more (1 left)"
    page.click("#groups-more")
    page.wait_for_function("document.querySelectorAll('#group-list .group').length === 2")
    assert page.locator("#groups-more").is_hidden()
    freed = [int(g.get_attribute("data-bytes-freed")) for g in page.query_selector_all("#group-list .group")]
    assert freed == sorted(freed, reverse=True)


def test_stacks_are_piles_with_their_cover(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/duplicates?kind=bursts")
    burst = page.wait_for_selector(".group.stack:has([data-image-id='10'])", timeout=60_000)
    assert burst.query_selector("strong").text_content() == "Burst of 3 frames"
    assert burst.get_attribute("data-keeper") == "11"  # the sharp frame
    assert burst.query_selector(".reason").text_content().startswith("Cover #11: sharpness: ")
    assert burst.query_selector(".pile .thumb.keeper[data-image-id='11']") is not None
    pair = page.wait_for_selector(".group.stack:has([data-image-id='20'])")
    assert pair.query_selector("strong").text_content() == "One shot in 2 formats"
    assert pair.query_selector(".reason").text_content() == "Cover #20: format: DNG over JPEG"


def test_resolve_keeps_the_ticked_images_and_deletes_the_rest(browser: Browser, stack: GatewayStack) -> None:
    page = browser.open(stack.url + "/#/duplicates?kind=copies")
    group = page.wait_for_selector(".group:has([data-image-id='3'])", timeout=60_000)
    assert group.query_selector("button.resolve").text_content() == "Keep 1, delete 2"
    page.check(".group:has([data-image-id='3']) input[aria-label='keep image 4']")
    assert group.query_selector("button.resolve").text_content() == "Keep 2, delete 1"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(".group:has([data-image-id='3']) button.resolve")
    page.wait_for_selector(".group:has([data-image-id='3'])", state="detached")
    status = httpx.post(stack.url + "/catalog_status", json={"image_ids": [3, 4, 5]}, timeout=10).json()
    assert set(status) == {"3", "4"}  # 5 is deleted everywhere; the kept two stay, resolved together
    page = browser.open(stack.url + "/#/duplicates?kind=copies")
    page.wait_for_selector(".group", timeout=30_000)
    assert page.locator(".group:has([data-image-id='3'])").count() == 0
