"""App factories: a service object in, a FastAPI app out.

:func:`create_service_app` is the one app shell of every service (feature, storeless, OCR): the
lifespan (``service.start`` / ``service.stop``), clear 4xx bodies, Prometheus metrics, /health,
/stats, /metrics and Swagger at /docs. :func:`create_app` adds the standard routes of a feature
service (docs/api.md): calculate / delete / by-id search / by-image search. CPU work (decoding,
feature extraction, searching, LMDB commits) runs in the thread pool, never on the event loop.
"""

import bisect
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, create_model
from starlette.concurrency import run_in_threadpool

from services.common.analysis_routes import add_analysis_routes
from services.common.collection import Collection
from services.common.docs import serve_docs_offline
from services.common.feature import FeatureService, VectorFeature
from services.common.images import ImageError
from services.common.limits import BodyLimitMiddleware, BudgetFull, check_k, safe_validation_errors
from services.common.metrics import ServiceMetrics
from services.common.postgres import add_unavailable_handler
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
from services.common.service import ServiceBase

log = logging.getLogger(__name__)


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is larger than the limit of {limit} bytes")
    return data


def create_service_app(service: ServiceBase, ready: Callable[[FastAPI], None] | None = None) -> FastAPI:
    """The app shell of any service: ``service.start()`` before the first request (then
    ``ready(app)``), ``service.stop()`` at shutdown, error handlers, body limits, metrics and info
    routes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        if ready is not None:
            ready(app)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title=f"ambience {service.name}",
        description=service.app_description(),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = service.metrics
    s = service.settings
    add_common_handlers(
        app, service.metrics, max_upload_bytes=s.max_upload_bytes, max_json_bytes=s.max_json_bytes
    )
    add_info_routes(app, service)
    return app


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


def add_common_handlers(
    app: FastAPI,
    metrics: ServiceMetrics,
    max_upload_bytes: int | None = None,
    max_json_bytes: int | None = None,
) -> None:
    """Clear 4xx bodies for invalid requests and images, per-route Prometheus metrics and (with
    ``max_upload_bytes``) refusal of oversized bodies, counted while they stream (shared with
    services that build their own routes). Swagger and ReDoc are served from the package
    (services/common/docs.py)."""
    serve_docs_offline(app)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": safe_validation_errors(exc.errors())}, status_code=422)

    @app.exception_handler(ImageError)
    async def image_error(_: Request, exc: ImageError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(BudgetFull)
    async def budget_full(_: Request, exc: BudgetFull) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message}, status_code=503, headers={"Retry-After": str(exc.retry_after)}
        )

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")  # the route template keeps label cardinality bounded
        metrics.observe(
            getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - started
        )
        return response

    if max_upload_bytes is not None:
        app.add_middleware(
            BodyLimitMiddleware,
            upload_limit=max_upload_bytes,
            json_limit=max_json_bytes or max_upload_bytes,
        )


def add_info_routes(app: FastAPI, service: ServiceBase) -> None:
    """/health, /stats and /metrics, from the service's ``health``, ``stats`` and metrics."""

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and readiness: 200 once the service has loaded its data and models."""
        return {"status": "ok", **service.health()}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """Collection size, index type and provenance, model and weights source."""
        return service.stats()

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        service.refresh_metrics()
        return Response(service.metrics.render(), media_type=service.metrics.content_type)
