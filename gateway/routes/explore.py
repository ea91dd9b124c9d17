"""``/moments``, ``/map`` through :class:`~gateway.explore.Explorer`, ``/image_info`` from the image facts;
:func:`answer`, how every explore route turns a computation in progress or a missing service into a reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.explore import Explorer, MomentsBody
from gateway.image_facts import ImageFacts
from gateway.places import display_name
from gateway.sources import Running, SourceUnavailable


async def answer(work: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    """The reply, or 202 while the source computes, 503 naming a service that cannot answer, 422
    for a source that cannot be analysed."""
    try:
        return await work()
    except Running as exc:
        return JSONResponse(exc.body, status_code=202, headers={"Retry-After": "2"})
    except SourceUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


class ImageIds(BaseModel):
    image_ids: list[int] = Field(max_length=10_000, description="Ids to look up")


def add_routes(
    app: FastAPI,
    explorer: Explorer,
    facts: ImageFacts,
    library_rows: Callable[[list[int]], dict[int, Any]] | None = None,
) -> None:
    """``library_rows``: the library's rows of ids (gateway/library/store.py), whose place
    /image_info shows."""

    @app.post("/moments", tags=["explore"])
    async def moments(body: MomentsBody) -> Any:
        """The collection clustered into moments, largest first: ``{"moment", "representative",
        "size", "members"}`` (members nearest the centroid first; the representative is the first),
        ``noise`` (density only). 202 ``{"status": "running", "progress"}`` while a first
        computation runs."""
        return await answer(lambda: explorer.moments(body))

    @app.get("/map", tags=["explore"])
    async def collection_map(
        source: Annotated[str | None, Query(description="vector service (default as /moments)")] = None,
        granularity: Annotated[float, Query(gt=0, le=1, description="of the moments shown")] = 0.3,
    ) -> Any:
        """A 2-D layout of the collection: ``points`` of ``{"image_id", "x", "y", "moment"}``."""
        return await answer(lambda: explorer.map(source, granularity))

    @app.post("/image_info", tags=["explore"])
    async def image_info(body: ImageIds) -> dict[str, Any]:
        """What the gateway recorded per image at add time: ``width``, ``height``, ``bytes``,
        ``file_name``, ``captured_at`` (EXIF, camera-local ISO time; a video's creation time),
        ``exposed_at`` (the camera's DateTimeOriginal with its fraction of a second) and
        ``exposure_subsecond`` (whether it had one), ``gps_latitude``, ``gps_longitude``, ``kind``
        (photo | video), ``format`` (JPEG, HEIC, DNG, MP4, ...), ``duration_s`` (videos),
        ``live_photo_of`` (the other half of a Live Photo), ``place`` (the GPS position's
        ``{"city", "region", "country", "country_code", "at_sea", "name"}``, geocoded offline);
        null where unknown. Unknown ids (and images whose facts step has not run yet) are absent."""
        found = await run_in_threadpool(facts.info, body.image_ids)
        rows = await run_in_threadpool(library_rows, list(found)) if library_rows and found else {}
        times = ("captured_at", "exposed_at")
        out = {}
        for i, v in found.items():
            out[str(i)] = {**v, **{t: v[t] and v[t].isoformat() for t in times}}
            if library_rows is not None:
                out[str(i)]["place"] = place_json(rows.get(i))
        return out


def place_json(row: Any) -> dict[str, Any] | None:
    """A library row's place as /image_info shows it (None without one)."""
    place = getattr(row, "place", None)
    if place is None:
        return None
    return {
        "city": place.city,
        "region": place.region,
        "country": place.country,
        "country_code": place.country_code,
        "at_sea": place.at_sea,
        "name": display_name(place, with_region=True),
    }
