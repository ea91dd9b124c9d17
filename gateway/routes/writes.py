"""Fan-out add and delete through the :class:`~gateway.writer.FanOutWriter`, and the catalog's view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.catalog import CatalogConflict
from gateway.image_facts import facts_as_json
from gateway.library.placing import RECEIVED_AT
from gateway.photo_metadata import read_metadata
from gateway.retries import RetryWorker
from gateway.routes.uploads import for_services, held_image
from gateway.writer import FanOutWriter, ImageRejected, reply_entries
from services.common.images import DecodeLimits
from services.common.limits import MemoryBudget
from services.common.schemas import ID_MAX


class ImageIdBody(BaseModel):
    image_id: int = Field(ge=0, lt=ID_MAX, description="Image id, 0 <= id < 2^63")


class CatalogQuery(BaseModel):
    image_ids: list[int] = Field(max_length=10_000, description="Ids to look up")


class RetryQuery(BaseModel):
    image_ids: list[int] | None = Field(
        None, max_length=10_000, description="Ids whose failed parts to retry (absent: every one)"
    )


def add_routes(
    app: FastAPI,
    writer: FanOutWriter,
    retries: RetryWorker,
    max_upload_bytes: int,
    inflight: MemoryBudget,
    limits: DecodeLimits,
) -> None:
    @app.post("/calculate_all_image_features", tags=["gateway"])
    async def calculate_all(
        image: Annotated[UploadFile, File(description="The image file")],
        image_id: Annotated[int, Form(ge=0, lt=ID_MAX, description="0 <= image_id < 2^63")],
    ) -> list[dict[str, Any]]:
        """Add an image or a video to every feature service (for a video, HEIC or AVIF the services get
        a JPEG still, decoded once here: a video's representative frame). One entry per service:
        ``ok``, ``failed`` or ``unavailable``; failed and unavailable parts are retried in the
        background until done."""
        async with held_image(image, max_upload_bytes, inflight) as data:
            still = await for_services(data, limits)
            # the header's facts, read once, from the original (a still keeps only its times and GPS)
            facts = facts_as_json(await run_in_threadpool(read_metadata, data, image.filename))
            facts[RECEIVED_AT] = datetime.now(
                UTC
            ).isoformat()  # the library orders images without a time by it
            try:
                if still is None:
                    outcomes = await writer.add(image_id, data, image.filename, facts=facts)
                else:
                    outcomes = await writer.add(image_id, still, image.filename, source=data, facts=facts)
            except CatalogConflict as exc:
                raise HTTPException(409, str(exc)) from exc
            except ImageRejected as exc:
                raise HTTPException(exc.status_code, {"message": str(exc), "services": exc.details}) from exc
        return reply_entries(outcomes)

    @app.post("/delete_all_image_features", tags=["gateway"])
    async def delete_all(body: ImageIdBody) -> list[dict[str, Any]]:
        """Delete an image from every feature service; parts that fail are retried in the background.
        A pending add of the same id is cancelled first, so a retry never brings the image back."""
        return reply_entries(await writer.delete(body.image_id))

    @app.post("/catalog_status", tags=["gateway"])
    async def catalog_status(query: CatalogQuery) -> dict[str, Any]:
        """What the catalog knows of these ids: ``complete``, ``pending`` (retries outstanding),
        ``failed`` (a part gave up: ``/catalog_retry``) or ``deleting``, with each service's part.
        Unknown ids are absent."""
        found = await writer.status(query.image_ids)
        return {str(k): v for k, v in found.items()}

    @app.get("/catalog_stats", tags=["gateway"])
    async def catalog_stats() -> dict[str, Any]:
        """Images in the catalog, deletions outstanding, pending and failed (gave up) parts per
        service, spooled uploads, largest id."""
        return await writer.stats()

    @app.post("/catalog_retry", tags=["gateway"])
    async def catalog_retry(query: RetryQuery) -> dict[str, int]:
        """Send parts that gave up (``failed``) again at once: ``{"requeued": N}``."""
        return {"requeued": await retries.retry_now(query.image_ids)}
