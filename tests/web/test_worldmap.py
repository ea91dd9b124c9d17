"""The world map script (gateway/web/static/worldmap.js) in a real browser: the land outline it
decodes and draws, where it places points, and its pan, zoom and click handling.

The script and the TopoJSON are inlined into a blank page (no server needed). Skips with the reason
when Chromium or Playwright is missing (README: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ambience_support.browser import Browser, launch_browser
from gateway.places import LAND_OUTLINE, topojson_rings
from gateway.web import STATIC

WIDTH, HEIGHT = 720, 360
LAND, SEA, POINT = (220, 216, 204), (232, 238, 243), (192, 57, 43)  # worldmap.js' default style


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with launch_browser() as browser:
        yield blank_map_page(browser)


def blank_map_page(browser: Browser) -> Any:
    context = browser.chromium.new_context(viewport={"width": WIDTH, "height": HEIGHT + 400})
    page = context.new_page()
    page.on("pageerror", lambda exc: browser.errors.append(f"worldmap page: {exc}"))
    page.set_content(
        "<!doctype html><html><body style='margin:0'>"
        f"<canvas id='map' tabindex='0' style='width:{WIDTH}px;height:{HEIGHT}px;display:block'></canvas>"
        "<canvas id='merc' style='width:400px;height:400px;display:block'></canvas></body></html>"
    )
    page.add_script_tag(content=(STATIC / "worldmap.js").read_text())
    page.add_script_tag(content=f"window.TOPOLOGY = {LAND_OUTLINE.read_text()};")
    page.evaluate(
        """() => {
        window.rings = WorldMap.decodeTopology(window.TOPOLOGY);
        window.clicked = [];
        window.map = WorldMap.create(document.getElementById('map'), rings,
            { onPointClick: (p) => clicked.push(p.id) });
        window.detach = map.attach();
        window.merc = WorldMap.create(document.getElementById('merc'), rings, { projection: 'mercator' });
    }"""
    )
    return page


def pixel(page: Any, canvas: str, lat: float, lon: float) -> tuple[int, int, int]:
    return tuple(
        page.evaluate(
            """([canvas, lat, lon]) => {
            const m = window[canvas], el = document.getElementById(canvas);
            const [x, y] = m.project(lat, lon), dpr = window.devicePixelRatio || 1;
            const ctx = el.getContext('2d');
            const data = ctx.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data;
            return Array.from(data.slice(0, 3));
        }""",
            [canvas, lat, lon],
        )
    )


def reset(page: Any) -> None:
    page.evaluate("() => { map.setPoints([]); map.centreOn(0, 0, 1); clicked.length = 0; }")


def test_decodes_the_same_rings_as_the_geocoder(page: Any) -> None:
    python = topojson_rings(json.loads(LAND_OUTLINE.read_text()))
    js = page.evaluate(
        """() => rings.map((r) => ({
            n: r.points.length, polar: r.polar,
            first: r.points[0], mid: r.points[Math.floor(r.points.length / 2)],
        }))"""
    )
    assert len(js) == len(python) > 100
    assert sum(r["polar"] for r in js) == 1  # Antarctica
    for ring, theirs in zip(python, js, strict=True):
        assert theirs["n"] == len(ring)
        for point, index in ((theirs["first"], 0), (theirs["mid"], len(ring) // 2)):
            assert point[1] == pytest.approx(ring[index, 1], abs=1e-9)
            assert (point[0] - ring[index, 0]) % 360 == pytest.approx(0, abs=1e-9) or (
                point[0] - ring[index, 0]
            ) % 360 == pytest.approx(360, abs=1e-9)


def test_draws_land_and_sea_where_they_are(page: Any) -> None:
    reset(page)
    land = [(0, 20), (-25, 134), (60, 100), (-80, 0), (66, -175.5), (72, -40), (40, -100)]
    sea = [(0, -150), (30, -40), (-40, 80), (42, 51), (0, 0)]  # the Caspian is water too
    for lat, lon in land:
        assert pixel(page, "map", lat, lon) == LAND, (lat, lon)
    for lat, lon in sea:
        assert pixel(page, "map", lat, lon) == SEA, (lat, lon)
    # zoomed into Europe the continent is still drawn (its ring reaches past 180°E)
    page.evaluate("() => map.centreOn(48, 10, 8)")
    assert pixel(page, "map", 48.0, 10.0) == LAND and pixel(page, "map", 43.0, 5.0) == SEA
    assert pixel(page, "merc", 0, 20) == LAND and pixel(page, "merc", 0, -150) == SEA


def test_points_by_latitude_and_longitude(page: Any) -> None:
    reset(page)
    kept = page.evaluate(
        "() => map.setPoints([{lat: 38.71, lon: -9.13, id: 1}, {lat: -33.86, lon: 151.2, id: 3},"
        " {lat: NaN, lon: 1, id: 7}, {lat: 95, lon: 0, id: 8}, {lat: 0, lon: 200, id: 9}])"
    )
    assert kept == 2
    assert pixel(page, "map", 38.71, -9.13) == POINT
    assert pixel(page, "map", -33.86, 151.2) == POINT
    x, y = page.evaluate("() => map.project(38.71, -9.13)")
    assert x == pytest.approx((180 - 9.13) / 360 * WIDTH) and y == pytest.approx((90 - 38.71) / 180 * HEIGHT)
    assert page.evaluate(f"() => map.pointAt({x + 2}, {y - 2}).id") == 1
    assert page.evaluate(f"() => map.pointAt({x + 40}, {y})") is None


def test_project_and_unproject_round_trip(page: Any) -> None:
    reset(page)
    errors = page.evaluate(
        """() => {
        const out = [];
        for (const m of [map, merc]) {
            m.centreOn(20, 100, 3);
            for (const [lat, lon] of [[21, 101], [10, 95.5], [30, 110]]) {
                const [la, lo] = m.unproject(...m.project(lat, lon));
                out.push(Math.abs(la - lat) + Math.abs(lo - lon));
            }
        }
        return out;
    }"""
    )
    assert max(errors) < 1e-6


def test_pan_and_zoom_helpers(page: Any) -> None:
    reset(page)
    # zooming keeps the position under the cursor in place
    before = page.evaluate("() => map.unproject(500, 100)")
    page.evaluate("() => map.zoomAt(4, 500, 100)")
    after = page.evaluate("() => map.unproject(500, 100)")
    assert after == pytest.approx(before, abs=1e-9)
    assert page.evaluate("() => map.getView().zoom") == pytest.approx(4)
    # a world's width of panning comes back to the same view (the map wraps)
    view = page.evaluate("() => map.getView()")
    page.evaluate(f"() => map.panBy({4 * WIDTH}, 0)")
    assert page.evaluate("() => map.getView()") == pytest.approx(view)
    # never zoomed out past the whole world, never panned off its top
    page.evaluate("() => { map.zoomAt(0.01); map.panBy(0, 5000); }")
    assert page.evaluate("() => map.getView()") == pytest.approx(
        {"lat": 0, "lon": view["lon"], "zoom": 1}, abs=1e-9
    )
    # fit points across the antimeridian: the short way round, close in
    page.evaluate("() => merc.fitPoints([{lat: -17.8, lon: 178}, {lat: -16.8, lon: -179.9}])")
    fitted = page.evaluate("() => merc.getView()")
    assert abs(fitted["lon"]) > 178 and fitted["zoom"] > 50


def test_mouse_drag_wheel_and_click(page: Any) -> None:
    reset(page)
    page.evaluate("() => map.setPoints([{lat: 38.71, lon: -9.13, id: 11}])")
    x, y = page.evaluate("() => map.project(38.71, -9.13)")
    page.mouse.click(x, y)
    assert page.evaluate("() => clicked") == [11]
    page.mouse.move(360, 180)
    page.mouse.wheel(0, -300)
    page.wait_for_function("() => map.getView().zoom > 1.5")
    centre = page.evaluate("() => map.getView()")
    page.mouse.move(360, 180)
    page.mouse.down()
    page.mouse.move(300, 180, steps=5)
    page.mouse.up()
    moved = page.evaluate("() => map.getView()")
    assert moved["lon"] > centre["lon"] and moved["zoom"] == centre["zoom"]
    assert page.evaluate("() => clicked") == [11]  # a drag is no click
    page.focus("#map")
    page.keyboard.press("-")
    assert page.evaluate("() => map.getView().zoom") < moved["zoom"]


def test_the_gateway_serves_the_map_files() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gateway.web import add_routes

    app = FastAPI()
    add_routes(app, None, lambda: None)  # type: ignore[arg-type,return-value]
    with TestClient(app) as client:
        script = client.get("/ui/worldmap.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "decodeTopology" in script.text
        outline = client.get("/ui/land-110m.json")
        assert outline.status_code == 200 and outline.headers["content-type"] == "application/json"
        assert outline.json()["type"] == "Topology"
        assert client.get("/ui/land-110m.LICENSE.txt").status_code == 404  # only listed files
