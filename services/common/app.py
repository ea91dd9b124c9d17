"""App factory: a feature object in, a FastAPI app with the standard routes out.

Routes (docs/api.md): calculate / delete / by-id search / by-image search, plus /health,
/stats, /metrics (Prometheus) and Swagger at /docs. CPU work (decoding, feature extraction,
searching, LMDB commits) runs in the thread pool, never on the event loop.
"""

import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

import faiss
from fastapi import FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, create_model
from starlette.concurrency import run_in_threadpool

from services.common.analysis_routes import add_analysis_routes
from services.common.collection import Collection
from services.common.docs import serve_docs_offline
from services.common.feature import FeatureService, VectorFeature
from services.common.headless import open_feature
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
)
from services.common.storage import Store

log = logging.getLogger(__name__)


class Maintenance:
    """Background thread: picks up writes of other processes and snapshots the index."""

    def __init__(self, collection: Collection, sync_interval: float, snapshot_interval: float) -> None:
        self.collection = collection
        self.sync_interval = sync_interval
        self.snapshot_interval = snapshot_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        last_snapshot = time.monotonic()
        store = self.collection.store
        while not self._stop.is_set():
            # Returns early when another replica wrote (PostgreSQL notifies); else after the interval.
            store.wait_for_change(self.sync_interval, self._stop)
            if self._stop.is_set():
                break
            try:
                self.collection.sync()
                if time.monotonic() - last_snapshot >= self.snapshot_interval:
                    self.collection.snapshot()
                    last_snapshot = time.monotonic()
            except Exception:  # keep the thread alive; the next round retries
                log.exception("index maintenance failed")


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is larger than the limit of {limit} bytes")
    return data


def create_app(service: FeatureService) -> FastAPI:
    settings = service.settings
    name = service.name
    metrics = ServiceMetrics(name)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faiss.omp_set_num_threads(settings.search_threads)
        opened = await run_in_threadpool(open_feature, service)
        store, collection = opened.store, opened.collection
        maintenance = Maintenance(collection, settings.sync_interval_s, settings.snapshot_interval_s)
        maintenance.start()
        state.update(store=store, collection=collection, started=time.time())
        app.state.collection = collection
        log.info("%s ready: %d images, index from %s", name, store.count(), collection.state.loaded_from)
        try:
            yield
        finally:
            maintenance.stop()
            await run_in_threadpool(opened.close)

    app = FastAPI(
        title=f"ambience {name}",
        description=f"The {name} feature service of ambience.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics

    add_common_handlers(
        app, metrics, max_upload_bytes=settings.max_upload_bytes, max_json_bytes=settings.max_json_bytes
    )
    # With the PostgreSQL store, a write while the server is unreachable answers 503 (searches keep
    # working from the in-memory index).
    add_unavailable_handler(app)

    def collection() -> Collection:
        return state["collection"]

    store_route, search_route = service.store_route, service.search_route
    Params = service.QueryParams
    id_field = (
        int,
        Field(ge=0, lt=service.max_image_id, description=f"0 <= image_id < {service.max_image_id}"),
    )
    SearchById = create_model(  # type: ignore[call-overload]
        f"{search_route}_search_by_id", __base__=(SearchParams, Params), image_id=id_field
    )
    SearchForm = create_model(f"{search_route}_search_form", __base__=(SearchParams, Params))
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

    add_info_routes(app, service, lambda: state, metrics)
    if isinstance(service, VectorFeature):
        add_analysis_routes(app, service, collection)
    return app


async def id_taken(store: Store, image_id: int) -> HTTPException:
    """409 naming the SHA-256 of the file stored under the id, so a client can tell its own image
    (a retry) from another one."""
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


class Describable(Protocol):
    """What /health and /stats need from a service (a FeatureService or a service of its own)."""

    @property
    def name(self) -> str: ...

    def info(self) -> dict[str, Any]: ...


def add_info_routes(
    app: FastAPI, service: Describable, state: Callable[[], dict[str, Any]], metrics: ServiceMetrics
) -> None:
    """/health, /stats and /metrics (shared with services that have no store)."""

    def describe() -> dict[str, Any]:
        current = state()
        out: dict[str, Any] = {"service": service.name, **service.info()}
        collection: Collection | None = current.get("collection")
        if collection is not None:
            out["count"] = collection.count()
        return out

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and readiness: 200 once the service has loaded its data and models."""
        return {"status": "ok", **describe()}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """Collection size, index type and provenance, model and weights source."""
        out = describe()
        current = state()
        collection: Collection | None = current.get("collection")
        if collection is not None:
            st = collection.state
            out["index"] = {
                "type": collection.index.type_name(),
                "entries": collection.index.count(),
                "generation": st.generation,
                "loaded_from": st.loaded_from,
                "replayed": st.replayed,
                "snapshot_generation": st.snapshot_generation,
            }
            out["store"] = {
                "generation": collection.store.generation,
                "disk_bytes": collection.store.disk_bytes(),
                "metadata": collection.store.metadata,
            }
            out["uptime_s"] = round(time.time() - current["started"], 1)
        return out

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        collection: Collection | None = state().get("collection")
        if collection is not None:
            metrics.items.set(collection.count())
        return Response(metrics.render(), media_type=metrics.content_type)
