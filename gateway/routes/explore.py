"""``/moments`` and ``/map`` through :class:`~gateway.explore.Explorer`, the sources they may
analyse (``/analysis_sources``), ``/image_info`` from the image facts; :func:`answer`, how every
explore route turns a computation in progress or a missing service into a reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.explore import Explorer, MomentsBody
from gateway.image_facts import ImageFacts
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


#: More per image for /image_info (its place, the faces and people in it): image ids -> fields.
MoreInfo = Callable[[list[int]], dict[int, dict[str, Any]]]


def add_routes(
    app: FastAPI, explorer: Explorer, facts: ImageFacts, more_info: list[MoreInfo] | None = None
) -> None:
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

    @app.get("/analysis_sources", tags=["explore"])
    async def analysis_sources() -> dict[str, Any]:
        """The vector services /moments and /map can analyse: ``default`` (used when no source is
        named; null when none can answer) and ``sources``: ``[{"name", "runs", "why"}]``, ``why``
        saying why ``ambience serve`` could not start one."""
        return await explorer.sources.listing()

    @app.post("/image_info", tags=["explore"])
    async def image_info(body: ImageIds) -> dict[str, Any]:
        """What the gateway recorded per image at add time: ``width``, ``height``, ``bytes``,
        ``file_name``, ``captured_at`` (EXIF, camera-local ISO time; a video's creation time),
        ``exposed_at`` (the camera's DateTimeOriginal with its fraction of a second) and
        ``exposure_subsecond`` (whether it had one), ``gps_latitude``, ``gps_longitude``, ``kind``
        (photo | video), ``format`` (JPEG, HEIC, DNG, MP4, ...), ``duration_s`` (videos),
        ``live_photo_of`` (the other half of a Live Photo), ``place`` (the GPS position's
        ``{"city", "region", "country", "country_code", "at_sea", "name"}``, geocoded offline);
        with the faces service, ``faces``: ``[{"face", "box", "person_id", "name"}]`` (the people
        in it); null where unknown. Unknown ids (and images whose facts step has not run yet) are
        absent."""
        found = await run_in_threadpool(facts.info, body.image_ids)
        times = ("captured_at", "exposed_at")
        out = {str(i): {**v, **{t: v[t] and v[t].isoformat() for t in times}} for i, v in found.items()}
        for more in more_info or []:
            if found:
                for i, fields in (await run_in_threadpool(more, list(found))).items():
                    out[str(i)].update(fields)
        return out
