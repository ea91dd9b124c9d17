"""The library at scale: /library pages and filters, months, places and moments at 100,000 images.

An embedded PostgreSQL with the gateway's and the library's tables, filled directly with 100,000
(``--small``: 3,000, fewer requests, a shorter look at the page) synthetic rows: ten years of
photos, 85% at home (Lisbon), 10% on trips to
40 cities in 20 countries, 5% without a position, 3% without a capture time, 5% videos; 2% of the
images in copies pairs (``gateway_links``); faces of 200 people in 30% of the images (the people
feature's ``people_faces``, a few people in most of them). The routes are the gateway's own
(gateway/routes/library.py) in an app of their own, asked in-process over ASGI (HTTP parsing,
validation, the query, JSON), so the numbers are the gateway's work without the network.

Measured per request kind, p50 and p99 over many requests: the first page, pages deep in the
library (a random cursor), each filter, combinations, the months for the scrubber, the places,
and the moments (trips, events, on this day: first computation and cached). Reference in the same
run: the same page read with OFFSET (what keyset paging avoids), at the same depths.

Then the page (when Chromium is installed): a gateway process over the same database (one
generated WebP preview stored under every id), Debian's Chromium through Playwright at 1280x900:
the time from navigation to the first tiles of the library, the time of ten jumps with the month
list (until a tile of that month shows), and two seconds of continuous wheel scrolling: frame
intervals (requestAnimationFrame), the most tiles in the document at once, the JS heap.

    python -m bench.library_bench [--small] [--size N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg2.extras
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from ambience_support.pg import scratch_server
from bench.timing import machine
from gateway.explore import Explorer
from gateway.image_facts import ImageFacts
from gateway.library import Library
from gateway.library import schema as library_schema
from gateway.library.query import LibraryFilter, PageKey, encode_cursor
from gateway.people import schema as people_schema
from gateway.proxy import ServiceClients
from gateway.routes import library as library_routes
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources
from services.common.postgres.database import Cursor, Database, ensure_database

HOME = ("Lisbon", "Lisbon", "Portugal", "PT", 38.7223, -9.1393)
#: (city, region, country, code, latitude, longitude): trips go to these
CITIES = [
    ("Porto", "Porto", "Portugal", "PT", 41.1496, -8.6109),
    ("Madrid", "Madrid", "Spain", "ES", 40.4168, -3.7038),
    ("Barcelona", "Catalonia", "Spain", "ES", 41.3874, 2.1686),
    ("Paris", "Île-de-France", "France", "FR", 48.8566, 2.3522),
    ("Lyon", "Auvergne-Rhône-Alpes", "France", "FR", 45.764, 4.8357),
    ("Rome", "Lazio", "Italy", "IT", 41.9028, 12.4964),
    ("Milan", "Lombardy", "Italy", "IT", 45.4642, 9.19),
    ("Berlin", "Berlin", "Germany", "DE", 52.52, 13.405),
    ("Munich", "Bavaria", "Germany", "DE", 48.1351, 11.582),
    ("London", "England", "United Kingdom", "GB", 51.5072, -0.1276),
    ("Edinburgh", "Scotland", "United Kingdom", "GB", 55.9533, -3.1883),
    ("Amsterdam", "North Holland", "Netherlands", "NL", 52.3676, 4.9041),
    ("Brussels", "Brussels Capital", "Belgium", "BE", 50.8503, 4.3517),
    ("Vienna", "Vienna", "Austria", "AT", 48.2082, 16.3738),
    ("Prague", "Prague", "Czechia", "CZ", 50.0755, 14.4378),
    ("Zurich", "Zurich", "Switzerland", "CH", 47.3769, 8.5417),
    ("Athens", "Attica", "Greece", "GR", 37.9838, 23.7275),
    ("Istanbul", "Istanbul", "Türkiye", "TR", 41.0082, 28.9784),
    ("Marrakesh", "Marrakesh-Safi", "Morocco", "MA", 31.6295, -7.9811),
    ("New York City", "New York", "United States", "US", 40.7128, -74.006),
    ("San Francisco", "California", "United States", "US", 37.7749, -122.4194),
    ("Tokyo", "Tokyo", "Japan", "JP", 35.6762, 139.6503),
    ("Kyoto", "Kyoto", "Japan", "JP", 35.0116, 135.7681),
    ("Rio de Janeiro", "Rio de Janeiro", "Brazil", "BR", -22.9068, -43.1729),
    ("São Paulo", "São Paulo", "Brazil", "BR", -23.5558, -46.6396),
    ("Cape Town", "Western Cape", "South Africa", "ZA", -33.9249, 18.4241),
    ("Sydney", "New South Wales", "Australia", "AU", -33.8688, 151.2093),
    ("Reykjavik", "Capital Region", "Iceland", "IS", 64.1466, -21.9426),
    ("Oslo", "Oslo", "Norway", "NO", 59.9139, 10.7522),
    ("Stockholm", "Stockholm", "Sweden", "SE", 59.3293, 18.0686),
    ("Copenhagen", "Capital Region", "Denmark", "DK", 55.6761, 12.5683),
    ("Seville", "Andalusia", "Spain", "ES", 37.3891, -5.9845),
    ("Valencia", "Valencia", "Spain", "ES", 39.4699, -0.3763),
    ("Florence", "Tuscany", "Italy", "IT", 43.7696, 11.2558),
    ("Venice", "Veneto", "Italy", "IT", 45.4408, 12.3155),
    ("Nice", "Provence-Alpes-Côte d'Azur", "France", "FR", 43.7102, 7.262),
    ("Bordeaux", "Nouvelle-Aquitaine", "France", "FR", 44.8378, -0.5792),
    ("Faro", "Faro", "Portugal", "PT", 37.0194, -7.9322),
    ("Funchal", "Madeira", "Portugal", "PT", 32.6669, -16.9241),
    ("Dublin", "Leinster", "Ireland", "IE", 53.3498, -6.2603),
]
PEOPLE = 200
#: What a reply lists (its size is reported).
LISTS = ("images", "months", "points", "countries", "trips", "events", "years")
REQUESTS = 200


def progress(message: str) -> None:
    print(f"[library_bench] {message}", file=sys.stderr, flush=True)


def synthetic_rows(n: int, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """library_images rows: ten years of photos, home, trips, no position, no time, videos."""
    start = datetime(2015, 1, 1)
    seconds = np.sort(rng.uniform(0, 10 * 365.25 * 86400, n))
    where = rng.random(n)
    trip_city = rng.integers(0, len(CITIES), n)
    rows = []
    for i in range(n):
        taken = start + timedelta(seconds=float(seconds[i]))
        captured = rng.random() >= 0.03
        added = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
        kind = "video" if rng.random() < 0.05 else "photo"
        if where[i] < 0.85:
            city = HOME
        elif where[i] < 0.95:
            city = CITIES[int(trip_city[i])]
        else:
            city = None
        if city is None:
            place: tuple[Any, ...] = (None, None, None, None, None, None)
        else:
            lat, lon = city[4] + rng.normal(0, 0.02), city[5] + rng.normal(0, 0.02)
            place = (lat, lon, *city[:4])
        rows.append(
            (
                i + 1,
                taken if captured else added.replace(tzinfo=None),
                captured,
                added,
                kind,
                4032,
                3024,
                *place,
                False,
                True,
            )
        )
    return rows


def fill(db: Database, n: int, rng: np.random.Generator) -> None:
    rows = synthetic_rows(n, rng)

    def write(cur: Cursor) -> None:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO library_images (image_id, taken_at, captured, added_at, kind, width, height,"
            " latitude, longitude, city, region, country, country_code, at_sea, placed) VALUES %s",
            rows,
            page_size=5000,
        )
        # copies: 2% of the images, each linked to the next id
        pairs = [(int(i), int(i) + 1, 10.0) for i in rng.choice(np.arange(1, n, 2), n // 100, replace=False)]
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO gateway_links (kind, image_id, other_id, distance) SELECT 'copies', a, b, d"
            " FROM (VALUES %s) AS v (a, b, d)",
            pairs,
            page_size=5000,
        )
        # the people feature's tables (its own migrations, applied by the Database): faces in 30% of
        # the images, a few people in most of them
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO people (person_id, name, hidden, generation) VALUES %s",
            [(p, f"person {p}", False, 1) for p in range(1, PEOPLE + 1)],
        )
        with_faces = rng.choice(np.arange(1, n + 1), int(n * 0.3), replace=False)
        faces = []
        for image_id in with_faces.tolist():
            count = int(rng.integers(1, 4))
            persons = {min(PEOPLE, int(rng.zipf(1.6))) for _ in range(count)}
            faces += [(image_id, k, p) for k, p in enumerate(sorted(persons))]
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO people_faces (image_id, face_index, person_id, box, size, score, descriptor,"
            " generation) SELECT a, b, c, '{0,0,10,10}', 10, 1, '', 1 FROM (VALUES %s) AS v (a, b, c)",
            faces,
            page_size=5000,
        )
        cur.execute("ANALYZE")

    db.run(write)


def build_app(db: Database) -> tuple[FastAPI, Library]:
    settings = GatewaySettings(services=[])
    clients = ServiceClients(settings, CollectorRegistry())
    explorer = Explorer(settings, AnalysisSources(settings, clients, []), ImageFacts(db))
    # faces counts as enabled: the people tables are filled above, so the people filter is measured
    library = Library.build(settings, db, clients, {"faces"}, explorer)
    app = FastAPI()
    library_routes.add_routes(app, library, settings.on_this_day_window_days)
    return app, library


def percentiles(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(samples) * 1000, [50, 99])
    return float(p50), float(p99)


async def measure(
    client: httpx.AsyncClient, path: str, params: Callable[[int], dict[str, Any]], repeats: int
) -> tuple[float, float, int]:
    """p50 and p99 ms of ``repeats`` requests (params per request), and the last reply's size."""
    for k in range(3):
        (await client.get(path, params=params(k))).raise_for_status()
    samples, size = [], 0
    for k in range(repeats):
        started = time.perf_counter()
        reply = await client.get(path, params=params(k))
        samples.append(time.perf_counter() - started)
        reply.raise_for_status()
        body = reply.json()
        size = next((len(body[k]) for k in LISTS if k in body), 0)
    return (*percentiles(samples), size)


def offset_page(db: Database, offset: int, limit: int) -> float:
    def read(cur: Cursor) -> None:
        cur.execute(
            "SELECT image_id, taken_at, captured, width, height, kind, city, country FROM library_images"
            " ORDER BY taken_at DESC, image_id DESC OFFSET %s LIMIT %s",
            (offset, limit),
        )
        cur.fetchall()

    started = time.perf_counter()
    db.run(read)
    return time.perf_counter() - started


async def run(db: Database, n: int, small: bool) -> list[str]:
    app, library = build_app(db)
    rng = np.random.default_rng(3)
    keys = db.run(
        lambda cur: (
            cur.execute(
                "SELECT taken_at, image_id FROM library_images ORDER BY taken_at DESC, image_id DESC"
            ),
            cur.fetchall(),
        )[1]
    )
    depths = rng.integers(0, n, 1000)
    cursor = lambda k: encode_cursor(PageKey(*keys[int(depths[k % 1000])]))  # noqa: E731
    month = lambda k: f"{2016 + k % 8}-{1 + k % 12:02d}"  # noqa: E731
    repeats = 10 if small else REQUESTS
    cases: list[tuple[str, str, Callable[[int], dict[str, Any]]]] = [
        ("first page (100)", "/library", lambda k: {"limit": 100}),
        ("a page at a random depth", "/library", lambda k: {"limit": 100, "cursor": cursor(k)}),
        ("kind=video", "/library", lambda k: {"limit": 100, "kind": "video"}),
        (
            "kind=video, random depth",
            "/library",
            lambda k: {"limit": 100, "kind": "video", "cursor": cursor(k)},
        ),
        ("country=PT", "/library", lambda k: {"country": "PT"}),
        ("country=IS (0.25%)", "/library", lambda k: {"country": "IS"}),
        ("city=Kyoto", "/library", lambda k: {"city": "Kyoto"}),
        ("a month (from, to)", "/library", lambda k: {"from": month(k), "to": month(k)}),
        ("duplicates=1", "/library", lambda k: {"duplicates": 1}),
        ("duplicates=1, random depth", "/library", lambda k: {"duplicates": 1, "cursor": cursor(k)}),
        ("people=1 (the most frequent)", "/library", lambda k: {"people": "1"}),
        ("people=60 (rare)", "/library", lambda k: {"people": "60"}),
        ("people=1,2", "/library", lambda k: {"people": "1,2"}),
        (
            "country=FR, 2019-2022, photo",
            "/library",
            lambda k: {"country": "FR", "from": "2019-01-01", "to": "2022-12-31", "kind": "photo"},
        ),
        (
            "people=2, country=PT, duplicates=1",
            "/library",
            lambda k: {"people": "2", "country": "PT", "duplicates": 1},
        ),
        ("months (scrubber)", "/library/months", lambda k: {}),
        ("months, people=3", "/library/months", lambda k: {"people": "3"}),
        ("places", "/places", lambda k: {}),
        ("places/points (map)", "/places/points", lambda k: {}),
    ]
    rows = [
        f"Library: {n:,} images. Requests in-process over ASGI, {repeats} per kind (three more first, not "
        "counted).\n",
        "| request | p50 ms | p99 ms | items in the reply |",
        "|---|---|---|---|",
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
        for label, path, params in cases:
            p50, p99, size = await measure(
                client, path, params, repeats if path != "/places/points" else min(repeats, 20)
            )
            rows.append(f"| `{path}` {label} | {p50:.1f} | {p99:.1f} | {size:,} |")
            progress(f"{label}: p50 {p50:.1f} ms")
        # a text filter: the hits the service found, as an id set (the service's own time is its own)
        ids = tuple(rng.choice(np.arange(1, n + 1), 200, replace=False).tolist())

        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            await asyncio.to_thread(library.store.page, LibraryFilter(image_ids=ids), None, 100)
            samples.append(time.perf_counter() - started)
        p50, p99 = percentiles(samples)
        rows.append(
            f"| text filter's 200 hits (the query, without the service) | {p50:.1f} | {p99:.1f} | 100 |"
        )
        # moments: first computation, then cached (the signature check only)
        for what, path, asked in (
            ("trips", "/trips", {}),
            ("events", "/events", {}),
            ("on this day", "/on_this_day", {"date": "2024-05-14"}),
        ):
            library.moments._state = None
            started = time.perf_counter()
            (await client.get(path, params=asked)).raise_for_status()
            first = (time.perf_counter() - started) * 1000
            p50, p99, size = await measure(client, path, lambda k, asked=asked: asked, min(repeats, 20))
            computed = (
                f" (the first request, reading and computing: {first:.0f} ms)"
                if path != "/on_this_day"
                else ""
            )
            rows.append(f"| `{path}` {what}{computed} | {p50:.1f} | {p99:.1f} | {size:,} |")
            progress(f"{what}: first {first:.0f} ms, cached p50 {p50:.1f} ms")
    # the reference: the same page by OFFSET at the same depths, the SQL alone on both sides
    keyset, offset = [], []
    for k in range(repeats):
        started = time.perf_counter()
        library.store.page(LibraryFilter(), PageKey(*keys[int(depths[k % 1000])]), 100)
        keyset.append(time.perf_counter() - started)
        offset.append(offset_page(db, int(depths[k % 1000]), 100))
    (k50, k99), (o50, o99) = percentiles(keyset), percentiles(offset)
    rows += [
        "",
        f"Reference, a page of 100 at the same random depths, the query alone: by keyset p50 {k50:.1f} ms, "
        f"p99 {k99:.1f} ms; by OFFSET p50 {o50:.1f} ms, p99 {o99:.1f} ms (OFFSET / keyset at p50: "
        f"{o50 / k50:.1f}).",
    ]
    return rows


def browser_rows(dsn: str, tmp: Path, n: int, small: bool) -> list[str]:
    """The library view in Chromium over a gateway process on ``dsn``."""
    from ambience_support.browser import chromium_path
    from ambience_support.processes import ServiceProcess
    from bench.page_bench import fill_thumbnails

    chromium_binary = chromium_path()
    if chromium_binary is None:
        return ["", "The page: not measured (no Chromium here)."]
    from playwright.sync_api import sync_playwright

    env = {
        "AMBIENCE_PG_DSN": dsn,
        "AMBIENCE_GATEWAY_SERVICES": "[]",
        "AMBIENCE_GATEWAY_RUNNER_STATE_DIR": str(tmp / "run"),
    }
    gateway = ServiceProcess("gateway", "AMBIENCE_GATEWAY_", tmp / "gateway", extra_env=env).start()
    try:
        webp = fill_thumbnails(dsn, n)
        progress(f"{n:,} previews of {webp} B stored")
        months = [m["month"] for m in httpx.get(gateway.url + "/library/months", timeout=60).json()["months"]]
        jumps = [months[int(k)] for k in np.linspace(len(months) - 1, 0, 3 if small else 10)]
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=chromium_binary, args=["--no-sandbox"])
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            started = time.perf_counter()
            page.goto(gateway.url + "/#/library")
            page.wait_for_selector("#library-grid .lib-tile", timeout=120_000)
            first_ms = (time.perf_counter() - started) * 1000
            jump_ms = []
            for month in jumps:
                started = time.perf_counter()
                page.select_option("#jump-month", month)
                page.wait_for_function(
                    "m => [...document.querySelectorAll('#library-grid .lib-tile')]"
                    ".some(t => t.title.startsWith(m))",
                    arg=month,
                    timeout=60_000,
                )
                jump_ms.append((time.perf_counter() - started) * 1000)
            page.select_option("#jump-month", months[len(months) // 2])
            page.evaluate(
                "() => { window.__frames = []; window.__most = 0; let last = performance.now();"
                " const tick = (t) => { window.__frames.push(t - last); last = t;"
                " window.__most = Math.max(window.__most, document.querySelectorAll('.lib-tile').length);"
                " if (window.__sampling) requestAnimationFrame(tick); };"
                " window.__sampling = true; requestAnimationFrame(tick); }"
            )
            page.mouse.move(600, 600)
            scroll_started = time.perf_counter()
            while time.perf_counter() - scroll_started < (0.5 if small else 2.0):
                page.mouse.wheel(0, 400)
                page.wait_for_timeout(16)
            page.evaluate("() => { window.__sampling = false; }")
            frames = page.evaluate("window.__frames.slice(1)")
            most = page.evaluate("window.__most")
            heap = page.evaluate("performance.memory.usedJSHeapSize") / 2**20
            chromium.close()
    finally:
        gateway.stop()
    f50, f95, fmax = np.percentile(frames, [50, 95, 100]) if frames else (0, 0, 0)
    j50, jmax = np.percentile(jump_ms, [50, 100])
    return [
        "",
        f"The page at {n:,} images (Chromium, 1280x900): first tiles {first_ms:.0f} ms after navigation; "
        f"a jump to a month with the month list p50 {j50:.0f} ms, at most {jmax:.0f} ms "
        f"({len(jumps)} jumps); {0.5 if small else 2} seconds of wheel scrolling: frame interval p50 "
        f"{f50:.0f} ms, p95 {f95:.0f} ms, longest {fmax:.0f} ms ({len(frames)} frames), at most {most} "
        f"tiles in the document; JS heap {heap:.0f} MiB"
        + (f"; script errors: {'; '.join(errors)[:200]}" if errors else "")
        + ".",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="3,000 images, fewer requests (smoke test)")
    parser.add_argument("--size", type=int, default=0, help="images (default 100,000)")
    args = parser.parse_args()
    n = args.size or (3_000 if args.small else 100_000)
    print(f"Machine: {machine()}.\n")
    with scratch_server() as (tmp, admin):
        dsn = ensure_database(admin, "library")
        db = Database(
            dsn,
            migrations={
                COMPONENT: MIGRATIONS,
                library_schema.COMPONENT: library_schema.MIGRATIONS,
                people_schema.COMPONENT: people_schema.MIGRATIONS,
            },
        )
        started = time.perf_counter()
        fill(db, n, np.random.default_rng(1))
        progress(f"{n:,} rows filled in {time.perf_counter() - started:.0f} s")
        print("\n".join(asyncio.run(run(db, n, args.small))))
        db.close()
        print("\n".join(browser_rows(dsn, tmp, n, args.small)))


if __name__ == "__main__":
    main()
