"""The app shell of every service: a service object in, a FastAPI app out.

:func:`create_service_app` gives any service (feature, storeless, OCR) the lifespan
(``service.start`` / ``service.stop``), clear 4xx bodies, Prometheus metrics, /health, /stats,
/metrics and Swagger at /docs. The standard routes of a feature service are added on top of it by
:func:`services.common.features.app.create_app`. CPU work runs in the thread pool, never on the
event loop.
"""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.common.docs import serve_docs_offline
from services.common.errors import DatabaseUnavailable
from services.common.images import ImageError
from services.common.limits import BodyLimitMiddleware, BudgetFull, safe_validation_errors
from services.common.metrics import ServiceMetrics
from services.common.service import ServiceBase


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


def add_unavailable_handler(app: FastAPI) -> None:
    """Answer DatabaseUnavailable with 503 and its message (the service itself stays up). Needs no
    database driver: services that never choose PostgreSQL never import one."""

    @app.exception_handler(DatabaseUnavailable)
    async def unavailable(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})
