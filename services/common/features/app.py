"""The standard routes of a feature service (docs/api.md) on the kit's app shell: calculate /
delete / by-id search / by-image search, ``/stored_ids``, and for one-vector features the
``/analysis/*`` routes. Decoding, extraction, LMDB commits and searches run in the thread pool.
"""

import bisect
import hashlib
import time
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, Field, create_model
from starlette.concurrency import run_in_threadpool

from services.common.app import add_unavailable_handler, create_service_app, read_upload
from services.common.features.analysis_routes import add_analysis_routes
from services.common.features.collection import Collection
from services.common.features.feature import FeatureService, VectorFeature
from services.common.limits import check_k
from services.common.schemas import (
    ERROR_RESPONSES,
    AddResult,
    DeleteResult,
    ImageIdBody,
    SearchParams,
    SimilarImage,
    StoredIds,
    StoredIdsBody,
)


def create_app(service: FeatureService) -> FastAPI:
    """A feature service's app: the shell plus the standard routes."""
    settings = service.settings
    metrics = service.metrics

    def expose_collection(app: FastAPI) -> None:
        app.state.collection = service.collection

    app = create_service_app(service, ready=expose_collection)
    # With the PostgreSQL store, a write while the server is unreachable answers 503 (searches keep
    # working from the in-memory index).
    add_unavailable_handler(app)

    def collection() -> Collection:
        return service.collection

    store_route, search_route = service.store_route, service.search_route
    Params = service.QueryParams
    id_field = (
        int,
        Field(ge=0, lt=service.max_image_id, description=f"0 <= image_id < {service.max_image_id}"),
    )
    # A service may redeclare a search parameter to document its own meaning of it
    # (local_features: distance_threshold is a minimum inlier count).
    redeclared: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in Params.model_fields.items()
        if name in SearchParams.model_fields
    }
    SearchById = create_model(  # type: ignore[call-overload]
        f"{search_route}_search_by_id", __base__=(SearchParams, Params), image_id=id_field, **redeclared
    )
    SearchForm = create_model(  # type: ignore[call-overload]
        f"{search_route}_search_form", __base__=(SearchParams, Params), **redeclared
    )
    result_model = list[service.ResultModel or SimilarImage]  # type: ignore[misc]

    def split(body: BaseModel) -> tuple[SearchParams, BaseModel]:
        data = body.model_dump()
        search = SearchParams(k=data.get("k"), distance_threshold=data.get("distance_threshold"))
        check_k(search.k, settings.max_k, f"{settings.env_prefix()}MAX_K")
        return search, Params.model_validate({k: v for k, v in data.items() if k in Params.model_fields})

    @app.post(f"/calculate_{store_route}", response_model=AddResult, responses=ERROR_RESPONSES)
    async def calculate(
        image: Annotated[UploadFile, File(description="The image file")],
        image_id: Annotated[int, Form(ge=0, lt=service.max_image_id)],
    ) -> dict[str, int]:
        """Compute and store the feature of an image under a new id."""
        data = await read_upload(image, settings.max_upload_bytes)
        digest = hashlib.sha256(data).hexdigest()
        if await run_in_threadpool(collection().store.__contains__, image_id):
            raise await id_taken(collection().store, image_id)
        started = time.perf_counter()
        value = await run_in_threadpool(service.extract, data)
        metrics.extract_seconds.observe(time.perf_counter() - started)
        if not await run_in_threadpool(collection().add, image_id, value, digest):
            raise await id_taken(collection().store, image_id)
        metrics.items.set(collection().count())
        return {"image_id": image_id}

    @app.post(f"/delete_{store_route}", response_model=DeleteResult, responses=ERROR_RESPONSES)
    async def delete(body: ImageIdBody) -> dict[str, Any]:
        """Delete an image's feature. ``deleted`` is false when the id was not stored."""
        deleted = await run_in_threadpool(collection().delete, body.image_id)
        metrics.items.set(collection().count())
        return {"image_id": body.image_id, "deleted": deleted}

    @app.post(
        f"/{search_route}_get_similar_images_by_id", response_model=result_model, responses=ERROR_RESPONSES
    )
    async def search_by_id(body: SearchById) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        """Images similar to a stored one (the image itself comes first)."""
        search, params = split(body)
        image_id = body.image_id  # type: ignore[attr-defined]
        stored = await run_in_threadpool(collection().store.get, image_id)
        if stored is None:
            raise HTTPException(404, f"image_id {image_id} not found")
        return await run_in_threadpool(service.search_by_stored, image_id, stored, search, params)

    @app.post(
        f"/{search_route}_get_similar_images_by_image_buffer",
        response_model=result_model,
        responses=ERROR_RESPONSES,
    )
    async def search_by_image(
        image: Annotated[UploadFile, File(description="The query image")],
        form: Annotated[SearchForm, Form()],  # type: ignore[valid-type]
    ) -> list[dict[str, Any]]:
        """Images similar to an uploaded one."""
        search, params = split(form)
        data = await read_upload(image, settings.max_upload_bytes)
        return await run_in_threadpool(service.search_by_image, data, search, params)

    # The sorted ids of the store's last generation asked: a client pages through them (or checks
    # one id per request: the gateway's thumbnails of imported images) without a sort per page.
    sorted_ids: dict[str, Any] = {"generation": None, "ids": []}

    def current_sorted_ids() -> list[int]:
        store = collection().store
        generation = (store.uuid, store.generation)  # read first: a write in between costs a re-sort
        if sorted_ids["generation"] != generation:
            sorted_ids.update(generation=generation, ids=sorted(store.ids()))
        return sorted_ids["ids"]

    @app.post("/stored_ids", response_model=StoredIds, responses=ERROR_RESPONSES)
    async def stored_ids(body: StoredIdsBody) -> dict[str, Any]:
        """The stored image ids, ascending, a page at a time: what a client that did not add them
        (the gateway after ``ambience import``) needs to go over every stored image."""
        ids = await run_in_threadpool(current_sorted_ids)
        start = bisect.bisect_right(ids, body.after) if body.after is not None else 0
        return {"image_ids": ids[start : start + body.limit], "count": len(ids)}

    if isinstance(service, VectorFeature):
        add_analysis_routes(app, service, collection)
    return app


class DigestLookup(Protocol):
    """A store that keeps the SHA-256 of each uploaded file with its record."""

    def digest(self, image_id: int) -> str | None: ...


async def id_taken(store: DigestLookup, image_id: int) -> HTTPException:
    """409 naming the SHA-256 of the file stored under the id, so a client can tell its own image
    (a retry) from another one (the gateway counts a 409 as done only for its own)."""
    digest = await run_in_threadpool(store.digest, image_id)
    return HTTPException(409, f"image_id {image_id} already exists (sha256 {digest or 'unknown'})")
