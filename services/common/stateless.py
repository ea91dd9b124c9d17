"""Services without a store (captioner, tagger): an image in, an answer out.

A service subclasses :class:`StatelessService` (the kit's :class:`ServiceBase`: load/close hooks,
``info`` for /health and /stats, the one decode path) and
:func:`services.common.app.create_service_app` gives it the same lifespan, error handling,
Prometheus metrics, /health, /stats and Swagger as every other service; the service adds its own
routes with :func:`image_route`, or :func:`image_app` builds an app whose one route is such.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, File, UploadFile
from starlette.concurrency import run_in_threadpool

from services.common.app import create_service_app, read_upload
from services.common.metrics import ServiceMetrics
from services.common.schemas import ERROR_RESPONSES
from services.common.service import ServiceBase


class StatelessService(ServiceBase):
    """Base of a service that answers about one uploaded image and keeps nothing."""


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


def image_app(
    service: StatelessService, path: str, handler: Callable[[bytes], Any], response_model: Any, summary: str
) -> FastAPI:
    """The app of a service whose one route of its own is ``POST path`` (an image) -> ``handler``."""
    app = create_service_app(service)
    image_route(app, path, handler, response_model, summary, service.settings.max_upload_bytes)
    return app
