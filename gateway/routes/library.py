"""The library (:mod:`gateway.library`): ``/library`` and ``/library/months``, ``/places`` (counts,
the map's points, the backfill), ``/trips``, ``/events``, ``/on_this_day``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.library import Library
from gateway.library.query import LibraryFilter, decode_cursor, encode_cursor, parse_date, parse_people
from gateway.library.store import PeopleUnavailable
from gateway.library.text import TextUnavailable
from gateway.routes.explore import answer

MAX_PAGE = 500

TextQ = Annotated[
    str | None,
    Query(description="Pictures matching this text (CLIP), or showing it (OCR: text_source=ocr)"),
]
SourceQ = Annotated[str | None, Query(description="clip or ocr (default: clip when image_text is enabled)")]
PeopleQ = Annotated[str | None, Query(description="Person ids, comma-separated: images holding all of them")]
CountryQ = Annotated[str | None, Query(description="ISO 3166 two-letter code, as /places lists")]
RegionQ = Annotated[str | None, Query(description="Region (state, province), as /places lists")]
CityQ = Annotated[str | None, Query(description="City, as /places lists")]
FromQ = Annotated[str | None, Query(alias="from", description="Taken on or after: 2024-05-12 or 2024-05")]
ToQ = Annotated[str | None, Query(alias="to", description="Taken on or before: 2024-05-16 or 2024-05")]
KindQ = Annotated[str | None, Query(description="photo or video")]
DupQ = Annotated[bool, Query(description="Only images in a copies group (gateway_links)")]


def add_routes(app: FastAPI, library: Library, window_days: int) -> None:
    async def library_filter(
        text: TextQ = None,
        text_source: SourceQ = None,
        people: PeopleQ = None,
        country: CountryQ = None,
        region: RegionQ = None,
        city: CityQ = None,
        date_from: FromQ = None,
        date_to: ToQ = None,
        kind: KindQ = None,
        duplicates: DupQ = False,
    ) -> LibraryFilter:
        """The filters /library and /library/months share, as query parameters (a dependency of both)."""
        try:
            hits = await library.text.ids(text, text_source) if text is not None else None
            return LibraryFilter(
                kind=kind or None,
                country=country or None,
                region=region or None,
                city=city or None,
                date_from=parse_date(date_from, "from"),
                date_to=parse_date(date_to, "to"),
                people=parse_people(people),
                copies=duplicates,
                image_ids=hits,
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except TextUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc

    async def read(fn: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except (ValueError, PeopleUnavailable) as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/library", tags=["library"])
    async def library_page(
        cursor: Annotated[str | None, Query(description="The `next` of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Images per page")] = 100,
        f: LibraryFilter = Depends(library_filter),  # not Annotated: a local name there is a string
    ) -> dict[str, Any]:
        """The library newest first (capture time, else the time the image was added; ``captured``
        says which): ``{"images": [{"image_id", "taken_at", "captured", "width", "height", "kind",
        "place"}], "next"}``, ``next`` the cursor of the following page (null at the end). Filters
        combine; 422 names a bad one (and the people filter without the people feature)."""
        try:
            after = decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        rows, key = await read(library.store.page, f, after, limit)
        return {"images": [r.as_json() for r in rows], "next": encode_cursor(key) if key else None}

    @app.get("/library/months", tags=["library"])
    async def library_months(
        f: LibraryFilter = Depends(library_filter),  # not Annotated: a local name there is a string
    ) -> dict[str, Any]:
        """Images per month under the same filters as /library, newest first (the page's date
        scrubber): ``{"months": [{"month": "2024-05", "count"}], "total"}``."""
        months = await read(library.store.months, f)
        return {"months": [{"month": m, "count": n} for m, n in months], "total": sum(n for _, n in months)}

    @app.get("/places", tags=["library"])
    async def places() -> dict[str, Any]:
        """Images per country and city (largest first; each city with the middle of its photos'
        positions), and how many are ``at_sea``, ``without_position`` or ``not_placed`` yet."""
        return await run_in_threadpool(library.places.counts)

    @app.get("/places/points", tags=["library"])
    async def place_points() -> dict[str, Any]:
        """Where the photos were taken, for a map: ``{"points": [{"lat", "lon", "count", "image_id",
        "city", "country_code"}]}``, positions rounded to about a kilometre (``image_id``: one of the
        images there, the highest id; ``city``: one of theirs)."""
        return {"points": await run_in_threadpool(library.places.points)}

    @app.post("/places/backfill", tags=["library"], status_code=202)
    async def start_backfill() -> dict[str, Any]:
        """Start the backfill (unless one runs): a library row for every image added before the
        library kept them, a place for every row not geocoded yet. 202 with its progress; ``GET
        /places/backfill`` follows it."""
        return library.backfill.start()

    @app.get("/places/backfill", tags=["library"])
    async def backfill_status() -> Any:
        """202 ``{"status": "running", "progress": {"phase", "done", "total"}}`` while the backfill
        runs, else ``{"status": "idle", "last"}`` (the last one's result)."""
        status = library.backfill.status()
        if status["status"] == "running":
            return JSONResponse(status, status_code=202, headers={"Retry-After": "1"})
        return status

    @app.get("/trips", tags=["library"])
    async def trips() -> dict[str, Any]:
        """Trips away from home, newest first: ``{"home", "trips": [{"trip", "title", "place",
        "start", "end", "size", "cover", "members", "countries", "distance_km", "parts"}]}``
        (``parts``: its events). Photos without a capture time or a position are in none."""
        return await library.moments.trips()

    @app.get("/trips/{trip_id}", tags=["library"])
    async def trip(
        trip_id: str,
        granularity: Annotated[float, Query(gt=0, le=1, description="of the visual sub-moments")] = 0.3,
        source: Annotated[str | None, Query(description="vector service (default as /moments)")] = None,
    ) -> Any:
        """One trip with its visual sub-moments (``moments``, in the order they happened;
        ``moments_from``: the vector service, or "time" when none answers and the trip's parts
        stand in). 202 while the service computes, 404 for an unknown trip."""

        async def work() -> dict[str, Any]:
            found = await library.moments.trip(trip_id, granularity, source)
            if found is None:
                raise HTTPException(404, f"no trip {trip_id!r} (GET /trips lists them)")
            return found

        return await answer(work)

    @app.get("/events", tags=["library"])
    async def events(
        limit: Annotated[int, Query(ge=1, le=10_000, description="Newest events returned")] = 200,
    ) -> dict[str, Any]:
        """Events (photos close in time and place), newest first: ``{"home", "total", "events":
        [{"event", "title", "place", "start", "end", "size", "cover", "members", "latitude",
        "longitude"}]}``."""
        return await library.moments.events(limit)

    @app.get("/on_this_day", tags=["library"])
    async def on_this_day(
        day: Annotated[str | None, Query(alias="date", description="2025-05-12 (default: today)")] = None,
        window: Annotated[
            int | None, Query(alias="window_days", ge=0, le=182, description="days either side")
        ] = None,
    ) -> dict[str, Any]:
        """Photos taken within a few days of this date in earlier years, by year, newest first:
        ``{"date", "window_days", "years": [{"year", "years_ago", "anchor", "size", "cover",
        "members"}]}``."""
        try:
            asked = date.fromisoformat(day) if day else datetime.now().date()
        except ValueError as exc:
            raise HTTPException(422, f"date must be an ISO date (2025-05-12), not {day!r}") from exc
        return await library.moments.on_this_day(asked, window_days if window is None else window)
