"""The web page in a real browser (Debian's Chromium driven by Playwright) against a real stack:
phash, color, OCR and image_text (tiny random CLIP) services and the gateway (in-process, served over
HTTP: ambience_support.inprocess), PostgreSQL, real photos.

Skips with the reason when Chromium or Playwright is missing (README: ``apt-get install chromium``).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ambience_support.browser import Browser, launch_browser
from ambience_support.images import encode
from ambience_support.inprocess import AppServer, InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.photos import load_rgb
from ambience_support.signs import Sign, render

#: Left out of day-to-day runs (pytest -m "not slow"): Chromium over a stack.
pytestmark = pytest.mark.slow

PHOTOS_ADDED = 24
KEY = "correct horse battery staple"
SIGN_ID, SIGN_WORD = 900, "BAKERY"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as b:
        yield b


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer, photos: list[Path]
) -> Iterator[InProcessStack]:
    names = ["phash", "color", "ocr", "image_text"]
    with inprocess_stack(tmp_path_factory.mktemp("web"), pg_server, names) as st:
        with httpx.Client(timeout=120) as client:
            for image_id, path in enumerate(photos[:PHOTOS_ADDED], start=1):
                r = client.post(
                    st.url + "/calculate_all_image_features",
                    files={"image": (path.name, path.read_bytes())},
                    data={"image_id": str(image_id)},
                )
                assert r.status_code == 200, r.text
            # a re-encoded copy of photo 1: a duplicate group with a keeper
            copy = encode(load_rgb(photos[0]).resize((640, 427)), quality=60)
            r = client.post(
                st.url + "/calculate_all_image_features",
                files={"image": ("copy.jpg", copy)},
                data={"image_id": str(PHOTOS_ADDED + 1)},
            )
            assert r.status_code == 200, r.text
            sign = encode(render(Sign((SIGN_WORD,), "DejaVuSans-Bold.ttf", 48, 2, 3))[0], quality=92)
            r = client.post(
                st.url + "/calculate_all_image_features",
                files={"image": ("sign.jpg", sign)},
                data={"image_id": str(SIGN_ID)},
            )
            assert r.status_code == 200, r.text
        st.wait_complete([*range(1, PHOTOS_ADDED + 2), SIGN_ID], timeout=180)
        yield st


def test_text_search_shows_results(browser: Browser, stack: InProcessStack) -> None:
    page = browser.open(stack.url + "/#/search")
    page.fill("#text-query", "a mountain lake")
    page.click("#text-form button[type=submit]")
    page.wait_for_selector("#search-results .thumb", timeout=30_000)
    assert page.locator("#search-results .thumb").count() >= 10


def test_ocr_search_finds_the_sign(browser: Browser, stack: InProcessStack) -> None:
    page = browser.open(stack.url + "/#/search")
    page.check("#ocr-toggle")
    page.fill("#text-query", SIGN_WORD.lower())
    page.click("#text-form button[type=submit]")
    page.wait_for_selector("#search-results .thumb", timeout=30_000)
    assert page.get_attribute("#search-results .thumb", "data-image-id") == str(SIGN_ID)
    # the sign's page shows the text recognised when it was added
    page = browser.open(stack.url + f"/#/image/{SIGN_ID}")
    page.wait_for_selector("dd[data-field='text in it']", timeout=30_000)
    assert SIGN_WORD in page.text_content("dd[data-field='text in it']")


def test_image_drop_shows_the_source_first(
    browser: Browser, stack: InProcessStack, photos: list[Path]
) -> None:
    page = browser.open(stack.url + "/#/search")
    query = encode(load_rgb(photos[4]), quality=50)
    page.set_input_files("#query-file", {"name": "query.jpg", "mimeType": "image/jpeg", "buffer": query})
    page.wait_for_selector("#col-unified_res li a", timeout=30_000)
    assert page.get_attribute("#col-unified_res li a", "data-image-id") == "5"
    for key in ("phash_res", "color_res", "image_text_res"):
        assert page.locator(f"#col-{key} li").count() > 0, f"{key} column is empty"


def test_moments_slider_changes_the_number_of_representatives(
    browser: Browser, stack: InProcessStack
) -> None:
    page = browser.open(stack.url + "/#/moments?g=0.2")
    page.wait_for_selector("#moments .moment", timeout=60_000)
    few = page.locator("#moments .moment").count()
    page.fill("#granularity", "0.6")  # fires input: the page reloads the moments
    page.wait_for_function(f"document.querySelectorAll('#moments .moment').length > {few}", timeout=60_000)
    many = page.locator("#moments .moment").count()
    assert 1 <= few < many <= PHOTOS_ADDED + 2
    page.locator("#moments .moment").first.click()
    page.wait_for_selector("#moment-members .thumb")


def test_moments_render_a_page_of_cards_at_a_time(browser: Browser, stack: InProcessStack) -> None:
    page = browser.open(stack.url + "/#/moments?g=1&per=10")  # per: cards per page (default 300)
    page.wait_for_selector("#moments .moment", timeout=60_000)
    total = int(page.text_content("#moment-count").split()[0])
    assert total > 20
    assert page.locator("#moments .moment").count() == 10
    page.focus("#moments-more")
    page.keyboard.press("Enter")  # keyboard users page on, and land on the first new card
    page.wait_for_function("document.querySelectorAll('#moments .moment').length === 20")
    assert page.evaluate("document.activeElement === document.querySelectorAll('#moments .moment')[10]")
    while page.locator("#moments-more").is_visible():
        page.click("#moments-more")
    assert page.locator("#moments .moment").count() == total


def test_moments_and_the_map_analyse_the_source_picked(browser: Browser, stack: InProcessStack) -> None:
    """The source picker: the default named, every running vector service offered; the choice
    reloads the view by that service and stays in the address."""
    page = browser.open(stack.url + "/#/moments?g=0.3")
    page.wait_for_selector("#moments .moment", timeout=60_000)
    assert page.text_content("#moment-count").endswith("by image_text")
    page.wait_for_selector("#moments-source option[value='color']", state="attached")
    offered = page.eval_on_selector_all("#moments-source option", "os => os.map(o => o.textContent)")
    assert offered == ["default (image_text)", "image_text", "color", "phash"]
    page.select_option("#moments-source", "color")
    page.wait_for_function(
        "document.querySelector('#moment-count')?.textContent.endsWith('by color')", timeout=60_000
    )
    assert "source=color" in page.url and page.locator("#moments .moment").count() >= 1

    page = browser.open(stack.url + "/#/map?source=phash")
    page.wait_for_selector("#map-canvas[data-points]", timeout=120_000)
    assert page.text_content("#map-status") == f"{PHOTOS_ADDED + 2} photos, by phash"
    page.wait_for_selector("#map-source option[value='phash']", state="attached")
    assert page.input_value("#map-source") == "phash"
    page.select_option("#map-source", "")  # back to the default
    page.wait_for_function(
        "document.querySelector('#map-status')?.textContent.endsWith('by image_text')", timeout=120_000
    )
    assert page.url.endswith("#/map")


def test_duplicate_group_shows_its_keeper(browser: Browser, stack: InProcessStack) -> None:
    page = browser.open(stack.url + "/#/duplicates?kind=copies")
    group = page.wait_for_selector(f".group:has([data-image-id='{PHOTOS_ADDED + 1}'])", timeout=60_000)
    # the keeper is the original: more pixels than its 640 px re-encode
    assert group.get_attribute("data-keeper") == "1"
    assert group.query_selector(".thumb.keeper[data-image-id='1']") is not None


def test_map_draws_a_point_per_image(browser: Browser, stack: InProcessStack) -> None:
    page = browser.open(stack.url + "/#/map")
    page.wait_for_selector("#map-canvas[data-points]", timeout=120_000)
    assert page.get_attribute("#map-canvas", "data-points") == str(PHOTOS_ADDED + 2)
    # something was drawn: the canvas is not blank
    drawn = page.evaluate(
        "(() => { const c = document.getElementById('map-canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()"
    )
    assert drawn > 50


def test_thumbnails_are_served_with_cache_headers(stack: InProcessStack) -> None:
    r = httpx.get(stack.url + "/thumbnails/1", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) <= 256
    again = httpx.get(stack.url + "/thumbnails/1", headers={"If-None-Match": r.headers["etag"]}, timeout=30)
    assert again.status_code == 304
    assert httpx.get(stack.url + "/thumbnails/123456", timeout=30).status_code == 404


@pytest.fixture(scope="module")
def keyed_gateway(stack: InProcessStack, tmp_path_factory: pytest.TempPathFactory) -> AppServer:
    """A second gateway on the same services and catalog, with an API key (stopped with the stack)."""
    return stack.another_gateway(tmp_path_factory.mktemp("keyed"), api_key=KEY)


def test_with_an_api_key_the_page_refuses_without_it(browser: Browser, keyed_gateway: AppServer) -> None:
    url = keyed_gateway.url
    assert httpx.get(url + "/ui/app.js", timeout=10).status_code == 401
    assert httpx.get(url + "/thumbnails/1", timeout=10).status_code == 401
    page = browser.open(url + "/#/status")
    page.wait_for_selector("form.login")
    assert "/ui/login" in page.url
    page.fill("#key", "wrong")
    page.click("form.login button")
    page.wait_for_selector("#login-error:not([hidden])")
    page.fill("#key", KEY)
    page.click("form.login button")
    page.wait_for_selector("table.status tr[data-service='phash']", timeout=30_000)
    cookie = next(c for c in page.context.cookies() if c["name"] == "ambience_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]


def test_cookie_alone_cannot_write_cross_site(keyed_gateway: AppServer) -> None:
    """A write that carries the session cookie but not the page's header (a cross-site form post)
    is refused; the same cookie may read."""
    from gateway.web.session import COOKIE, token

    cookies = {COOKIE: token(KEY)}
    url = keyed_gateway.url
    read = httpx.get(url + "/catalog_stats", cookies=cookies, timeout=10)
    assert read.status_code == 200
    forged = httpx.post(url + "/delete_all_image_features", json={"image_id": 1}, cookies=cookies, timeout=10)
    assert forged.status_code == 401
    status = httpx.post(
        url + "/catalog_status", json={"image_ids": [1]}, headers={"X-API-Key": KEY}, timeout=10
    ).json()
    assert json.dumps(status).count("delete") == 0, "image 1 must not have been deleted"


def test_missing_thumbnails_are_reported_and_made_again(
    stack: InProcessStack, photos: list[Path], tmp_path: Path
) -> None:
    import psycopg2

    conn = psycopg2.connect(stack.dsn)
    with conn, conn.cursor() as cur:  # as if image 2 had been added before previews were kept
        cur.execute("DELETE FROM gateway_thumbnails WHERE image_id = 2")
    conn.close()
    assert httpx.get(stack.url + "/thumbnails/2", timeout=30).status_code == 404
    backfill = httpx.post(stack.url + "/thumbnails/backfill", timeout=60).json()
    assert backfill == {"made": 0, "missing": [2]}, "the upload is no longer spooled: it needs the picture"
    unknown = httpx.post(
        stack.url + "/thumbnails/777777", files={"image": ("x.jpg", photos[1].read_bytes())}, timeout=60
    )
    assert unknown.status_code == 404 and "neither in the catalog nor stored" in unknown.json()["detail"]
    # the command makes it from the folder the image was indexed from (its id mapping names the file)
    mapping = tmp_path / "ids.csv"
    mapping.write_text(f"2,{photos[1].name}\n")
    backfill_command = subprocess.run(
        [
            sys.executable,
            "-m",
            "ambience",
            "thumbnails",
            "backfill",
            str(photos[1].parent),
            "--mapping",
            str(mapping),
            "--gateway",
            stack.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert backfill_command.returncode == 0, backfill_command.stderr
    assert "from files: 1, still missing: 0" in backfill_command.stdout
    assert httpx.get(stack.url + "/thumbnails/2", timeout=30).status_code == 200
    assert httpx.post(stack.url + "/thumbnails/backfill", timeout=60).json() == {"made": 0, "missing": []}


def test_imported_images_get_previews_from_their_folder(
    stack: InProcessStack, photos: list[Path], tmp_path: Path
) -> None:
    """``ambience import`` writes past the gateway: the catalog cannot list the missing previews, the
    command finds them through the folder (ids from the file names, as the import gave them)."""
    folder = tmp_path / "imported"
    folder.mkdir()
    image_id = 950  # not SIGN_ID: the stack holds that one
    picture = photos[2].read_bytes()
    (folder / f"{image_id}.jpg").write_bytes(picture)
    stored = httpx.post(
        stack.services["phash"].url + "/calculate_phash_features",
        files={"image": ("x.jpg", picture)},
        data={"image_id": str(image_id)},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    assert httpx.get(f"{stack.url}/thumbnails/{image_id}", timeout=30).status_code == 404

    def backfill() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ambience", "thumbnails", "backfill", str(folder)]
        return subprocess.run(
            [*command, "--imported", "--ids-from-filenames", "--gateway", stack.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = backfill()
    assert first.returncode == 0, first.stderr
    assert "1 checked, previews made: 1, failed: 0" in first.stdout
    assert httpx.get(f"{stack.url}/thumbnails/{image_id}", timeout=30).status_code == 200
    again = backfill()
    assert "1 checked, previews made: 0, failed: 0" in again.stdout
