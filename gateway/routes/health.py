"""``/health`` (each service's state, the catalog's) and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import Gauge
from starlette.concurrency import run_in_threadpool

from gateway.proxy import ServiceClients
from gateway.settings import GatewaySettings
from gateway.writer import FanOutWriter
from services.common.metrics import ServiceMetrics
from services.common.postgres import DatabaseUnavailable

#: Fields of a service's own /health shown in the gateway's.
HEALTH_FIELDS = ("count", "weights", "model")


def runner_mark(settings: GatewaySettings, name: str) -> str | None:
    """Why ``ambience serve`` could not start the service, when it said so."""
    path = settings.resolved_runner_state_dir() / f"{name}.unavailable"
    try:
        return path.read_text().strip() or "marked unavailable by the runner"
    except OSError:
        return None


def add_routes(
    app: FastAPI,
    settings: GatewaySettings,
    clients: ServiceClients,
    writer: FanOutWriter,
    metrics: ServiceMetrics,
) -> None:
    enabled = settings.enabled()
    pending_gauge = Gauge(
        "ambience_gateway_pending_parts",
        "Image parts waiting for a retry",
        ["service"],
        registry=metrics.registry,
    )

    @app.get("/health", tags=["gateway"])
    async def health() -> dict[str, Any]:
        """The gateway is up; each service is ``up``, ``down`` (not answering) or ``unavailable``
        (its runner reported it cannot start, e.g. model weights missing); the catalog is up or down."""
        checks = await asyncio.gather(*(clients.health(u.name) for u in enabled))
        services: dict[str, Any] = {}
        for upstream, check in zip(enabled, checks, strict=True):
            entry: dict[str, Any] = {"url": settings.url(upstream.name)}
            if check.ok:
                entry["status"] = "up"
                if isinstance(check.body, dict):
                    entry.update({k: v for k, v in check.body.items() if k in HEALTH_FIELDS})
            else:
                mark = runner_mark(settings, upstream.name)
                entry["status"] = "unavailable" if mark else "down"
                entry["detail"] = mark or check.detail
            services[upstream.name] = entry
        try:
            await run_in_threadpool(writer.catalog.db.ping)
            db = {"status": "up", "server": writer.catalog.db.where}
        except DatabaseUnavailable as exc:
            db = {"status": "down", "detail": str(exc)}
        return {"status": "ok", "service": "gateway", "services": services, "catalog": db}

    @app.get("/metrics", response_class=Response, tags=["gateway"])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, calls to each service, parts waiting for a retry."""
        with contextlib.suppress(DatabaseUnavailable):
            counts = await run_in_threadpool(writer.catalog.counts)
            for name in writer.services:
                pending_gauge.labels(name).set(counts["pending_parts"].get(name, 0))
        return Response(metrics.render(), media_type=metrics.content_type)
