"""Services without a store (captioner, tagger): an image in, an answer out.

A service subclasses :class:`StatelessService` (load/close hooks, ``info`` for /health and /stats,
the kit's one decode path) and :func:`create_stateless_app` gives it the same error handling,
Prometheus metrics, /health, /stats and Swagger as the feature services; the service adds its own
routes with :func:`image_route`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, File, UploadFile
from starlette.concurrency import run_in_threadpool

from services.common.app import add_common_handlers, add_info_routes, read_upload
from services.common.images import DecodedImage, DecodeLimits, Mode, decode_image
from services.common.metrics import ServiceMetrics
from services.common.schemas import ERROR_RESPONSES
from services.common.settings import ServiceSettings


class StatelessService:
    """Base of a service that answers about one uploaded image and keeps nothing."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.limits = DecodeLimits.from_settings(settings)

    @property
    def name(self) -> str:
        return self.settings.service_name

    def decode(self, data: bytes, mode: Mode = "RGB", draft_size: int | None = None) -> DecodedImage:
        return decode_image(data, mode, limits=self.limits, draft_size=draft_size)

    def load(self) -> None:
        """Load models (raise StartupError / WeightsMissingError to refuse to start)."""

    def close(self) -> None:
        """Release resources at shutdown."""

    def info(self) -> dict[str, Any]:
        """Extra /health and /stats fields (model, weights source)."""
        return {}


def create_stateless_app(service: StatelessService, description: str) -> FastAPI:
    """The app shell of a storeless service: lifespan (load/close), errors, metrics, info routes."""
    metrics = ServiceMetrics(service.name)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.load)
        state["started"] = time.time()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title=f"ambience {service.name}", description=description, version="0.1.0", lifespan=lifespan
    )
    app.state.service = service
    app.state.metrics = metrics
    add_common_handlers(
        app,
        metrics,
        max_upload_bytes=service.settings.max_upload_bytes,
        max_json_bytes=service.settings.max_json_bytes,
    )
    add_info_routes(app, service, lambda: state, metrics)
    return app


def image_route(
    app: FastAPI,
    path: str,
    handler: Callable[[bytes], Any],
    response_model: Any,
    summary: str,
    max_upload_bytes: int,
) -> None:
    """``POST path`` (multipart ``image``) -> ``handler(image bytes)``, run in the thread pool.

    The handler decodes through the kit (ImageError -> 4xx) and its time is recorded in the
    ``ambience_extract_seconds`` histogram.
    """
    metrics: ServiceMetrics = app.state.metrics

    async def route(image: Annotated[UploadFile, File(description="The image file")]) -> Any:
        data = await read_upload(image, max_upload_bytes)
        started = time.perf_counter()
        result = await run_in_threadpool(handler, data)
        metrics.extract_seconds.observe(time.perf_counter() - started)
        return result

    route.__doc__ = summary
    app.post(path, response_model=response_model, responses=ERROR_RESPONSES, summary=summary)(route)
