"""Thumbnails: the preview kept per image (:mod:`gateway.thumbnails`), and filling in missing ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from gateway import thumbnails
from gateway.backlog import Backlog
from gateway.proxy import ServiceClients
from gateway.routes.uploads import read_image
from gateway.writer import Spool
from services.common.images import DecodeLimits, ImageError
from services.common.postgres.database import SqlRunner
from services.common.schemas import ID_MAX


def add_routes(
    app: FastAPI,
    db: SqlRunner,
    backlog: Backlog,
    clients: ServiceClients,
    stored_by: list[str],
    long_side: int,
    limits: DecodeLimits,
) -> None:
    """``stored_by``: the feature services, asked whether they store an id the catalog never saw."""

    def check_id(image_id: int) -> None:
        if not 0 <= image_id < ID_MAX:
            raise HTTPException(422, "image_id must be 0 <= id < 2^63")

    @app.get("/thumbnails/{image_id}", tags=["page"], response_class=Response)
    async def thumbnail(image_id: int, request: Request) -> Response:
        """The image's preview (WebP, long side AMBIENCE_GATEWAY_THUMBNAIL_SIZE), cacheable; 404 for
        images added before previews were kept (``POST /thumbnails/backfill`` or
        ``ambience thumbnails backfill DIR`` makes them)."""
        check_id(image_id)
        found = await run_in_threadpool(thumbnails.get, db, image_id)
        if found is None:
            raise HTTPException(404, f"no thumbnail for image {image_id}")
        headers = {"ETag": f'"{found.etag}"', "Cache-Control": "private, max-age=86400"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(found.webp, media_type="image/webp", headers=headers)

    @app.post("/thumbnails/backfill", tags=["page"])
    async def backfill() -> dict[str, Any]:
        """Make the missing previews of added images whose upload is still spooled (adds that are
        pending). Returns how many were made and the ids still without one, which need their
        pictures again (``POST /thumbnails/{image_id}``, or ``ambience thumbnails backfill DIR``)."""
        made, still_missing = 0, []
        for image_id, spool_path in await run_in_threadpool(thumbnails.missing_in_catalog, db):
            data = await run_in_threadpool(Spool.read, spool_path) if spool_path else None
            if data is None:
                still_missing.append(image_id)
                continue
            try:
                await keep(image_id, data)
                made += 1
            except ImageError:
                still_missing.append(image_id)
        return {"made": made, "missing": still_missing}

    @app.post("/thumbnails/{image_id}", tags=["page"])
    async def set_thumbnail(
        image_id: int, image: Annotated[UploadFile, File(description="The image's picture")]
    ) -> dict[str, Any]:
        """Make the preview of an image from its picture: one added before previews were kept, or
        one ``ambience import`` wrote into the services' stores (the catalog never saw it). 404 for
        ids neither the catalog nor any feature service knows."""
        check_id(image_id)
        data = await read_image(image, limits.max_bytes)
        known = await run_in_threadpool(backlog.status, [image_id])
        if image_id not in known and not await stored_by_a_service(image_id):
            raise HTTPException(404, f"image {image_id} is neither in the catalog nor stored by a service")
        try:
            await keep(image_id, data)
        except ImageError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        return {"image_id": image_id}

    async def stored_by_a_service(image_id: int) -> bool:
        """Whether a feature service stores ``image_id`` (its ``/stored_ids`` page from just below)."""
        after = image_id - 1 if image_id > 0 else None
        for name in stored_by:
            result = await clients.call(name, "/stored_ids", json={"after": after, "limit": 1})
            if result.ok and result.body["image_ids"][:1] == [image_id]:
                return True
        return False

    async def keep(image_id: int, data: bytes) -> None:
        webp = await run_in_threadpool(thumbnails.make_thumbnail, data, long_side, 80, limits)
        await run_in_threadpool(thumbnails.put, db, image_id, webp)
