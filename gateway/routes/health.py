"""``/health`` (each service's state, the catalog's) and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import Gauge
from starlette.concurrency import run_in_threadpool

from gateway.auth import authorised
from gateway.backlog import Backlog
from gateway.proxy import ServiceClients
from gateway.runner_marks import RunnerMarks
from gateway.settings import GatewaySettings
from services.common.errors import DatabaseUnavailable
from services.common.metrics import ServiceMetrics
from services.common.postgres.database import PostgresComponent

#: Seconds a keyless /health answer is reused.
PUBLIC_HEALTH_TTL_S = 1.0
#: Fields of a service's own /health shown in the gateway's.
HEALTH_FIELDS = ("count", "weights", "model")


def runner_mark(settings: GatewaySettings, name: str) -> str | None:
    """Why ``ambience serve`` could not start the service, when it said so."""
    return RunnerMarks(settings.resolved_runner_state_dir()).reason(name)


def summary(details: dict[str, Any]) -> str:
    """``up`` (every service and the catalog up), ``down`` (no catalog, or no service up) or
    ``degraded``: all a caller without the API key learns."""
    states = [entry["status"] for entry in details["services"].values()]
    if details["catalog"]["status"] != "up" or "up" not in states:
        return "down"
    return "up" if all(state == "up" for state in states) else "degraded"


class PublicHealth:
    """The keyless /health answer, computed at most once per ``ttl_s`` however often it is asked
    (each computation asks every service), and by one caller at a time."""

    def __init__(self, details: Callable[[], Awaitable[dict[str, Any]]], ttl_s: float = PUBLIC_HEALTH_TTL_S):
        self.details = details
        self.ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._value = ""
        self._at = -math.inf

    async def status(self) -> str:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                self._value = summary(await self.details())
                self._at = time.monotonic()
            return self._value


def degraded_reasons(services: dict[str, Any], catalog: dict[str, Any]) -> list[str]:
    """One line per part that is not up: the gateway answers, but not with everything."""
    reasons = [
        f"{name} {entry['status']}: {entry.get('detail', '')}".rstrip(": ")
        for name, entry in services.items()
        if entry["status"] != "up"
    ]
    if catalog["status"] != "up":
        reasons.append(f"catalog down: {catalog.get('detail', '')}")
    for name, count in sorted(catalog.get("failed_parts", {}).items()):
        reasons.append(f"{name}: {count} part(s) gave up after retries (`ambience catalog retry`)")
    for name, count in sorted(catalog.get("failed_steps", {}).items()):
        reasons.append(f"step {name}: gave up for {count} image(s) (`ambience catalog status` says why)")
    return reasons


def runner_restarts(settings: GatewaySettings, name: str) -> dict[str, Any] | None:
    """How often ``ambience serve`` restarted the service after a crash, when it did."""
    path = settings.resolved_runner_state_dir() / f"{name}.restarts"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def add_routes(
    app: FastAPI,
    settings: GatewaySettings,
    clients: ServiceClients,
    backlog: Backlog,
    database: PostgresComponent,
    stored_by: list[str],
    metrics: ServiceMetrics,
) -> None:
    """``stored_by``: the feature services, whose pending and failed parts are exported."""
    enabled = settings.enabled()
    pending_gauge = Gauge(
        "ambience_gateway_pending_parts",
        "Image parts waiting for a retry",
        ["service"],
        registry=metrics.registry,
    )
    failed_gauge = Gauge(
        "ambience_gateway_failed_parts",
        "Image parts that gave up after retries (ambience catalog retry sends them again)",
        ["service"],
        registry=metrics.registry,
    )
    steps_gauge = Gauge(
        "ambience_gateway_steps",
        "Steps that follow adds (facts, thumbnail, links, ...) still pending or given up",
        ["step", "status"],
        registry=metrics.registry,
    )

    async def details() -> dict[str, Any]:
        checks = await asyncio.gather(*(clients.health(u.name) for u in enabled))
        services: dict[str, Any] = {}
        for upstream, check in zip(enabled, checks, strict=True):
            entry: dict[str, Any] = {"url": settings.url(upstream.name)}
            if check.ok:
                entry["status"] = "up"
                if isinstance(check.body, dict):
                    entry.update({k: v for k, v in check.body.items() if k in HEALTH_FIELDS})
            else:
                mark = await run_in_threadpool(runner_mark, settings, upstream.name)
                entry["status"] = "unavailable" if mark else "down"
                entry["detail"] = mark or check.detail
            restarts = runner_restarts(settings, upstream.name)
            if restarts:
                entry["restarts"] = restarts.get("restarts")
                entry["last_exit_code"] = restarts.get("last_exit_code")
            services[upstream.name] = entry
        try:
            await run_in_threadpool(database.ping)
            counts = await run_in_threadpool(backlog.counts)
            db = {
                "status": "up",
                "server": database.where,
                "pending_parts": counts["pending_parts"],
                "failed_parts": counts["failed_parts"],
                # the backlog of what follows the adds (facts, thumbnails, links, ...)
                "pending_steps": counts["pending_steps"],
                "failed_steps": counts["failed_steps"],
            }
        except DatabaseUnavailable as exc:
            db = {"status": "down", "detail": str(exc)}
        reasons = degraded_reasons(services, db)
        answer: dict[str, Any] = {"service": "gateway", "services": services, "catalog": db}
        status = summary(answer)
        return {
            "status": "degraded" if status == "up" and reasons else status,
            **({"reasons": reasons} if reasons else {}),
            **answer,
        }

    public = PublicHealth(details)
    key = settings.api_key.encode() if settings.api_key else None

    @app.get("/health", tags=["gateway"])
    async def health(request: Request) -> Any:
        """With the API key or the page's session (or when no key is set): the gateway is up; each
        service is ``up``, ``down`` (not answering) or ``unavailable`` (its runner reported it cannot
        start, e.g. model weights missing); the catalog is up or down; ``status`` ``up``,
        ``degraded`` or ``down`` as below, with one line per part not up in ``reasons``. Without the key: only
        ``{"status": "up" | "degraded" | "down"}``, computed at most once a second."""
        if key is None or authorised(request.scope, key):
            return await details()
        return {"status": await public.status()}

    @app.get("/metrics", response_class=Response, tags=["gateway"])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, calls to each service, parts waiting for a retry and parts
        that gave up, the steps that follow adds still to do."""
        with contextlib.suppress(DatabaseUnavailable):
            counts = await run_in_threadpool(backlog.counts)
            for name in stored_by:
                pending_gauge.labels(name).set(counts["pending_parts"].get(name, 0))
                failed_gauge.labels(name).set(counts["failed_parts"].get(name, 0))
            steps_gauge.clear()  # a step with nothing left has no series
            for status in ("pending", "failed"):
                for step, count in counts[f"{status}_steps"].items():
                    steps_gauge.labels(step, status).set(count)
        return Response(metrics.render(), media_type=metrics.content_type)
