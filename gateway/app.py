"""The gateway: one endpoint for the gallery in front of every service. This module only wires.

- every service route proxied by name, bodies streamed (gateway/routes/passthrough.py);
- ``/calculate_all_image_features`` / ``/delete_all_image_features``: fan-out to every feature
  service, recorded in the catalog (PostgreSQL); parts that fail are retried by a background worker
  from a spool of the uploaded bytes until done (gateway/writer.py, gateway/routes/writes.py);
- ``/reverse_search``: duplicate mode (phash within a distance, optionally local-feature-verified
  crops) and normal mode (all search services at once, fused by weighted reciprocal rank)
  (gateway/reverse_search.py, gateway/routes/search.py);
- the web page at ``/`` with a thumbnail per image (gateway/web/, gateway/thumbnails.py);
- optional API key (gateway/auth.py; the page signs in with a cookie, gateway/web/session.py),
  CORS, /health with each service's state, /metrics
  (gateway/routes/health.py), Swagger at /docs;
- ``/moments``, ``/map``, ``/duplicate_groups``: the collection explored, clustering run inside the
  vector services (gateway/explore.py, gateway/routes/explore.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from gateway import thumbnails, web
from gateway.auth import ApiKeyMiddleware
from gateway.catalog import COMPONENT, MIGRATIONS, Catalog
from gateway.explore import Explorer
from gateway.openapi import openapi_with_service_schemas
from gateway.proxy import ServiceClients
from gateway.reverse_search import ReverseSearch
from gateway.routes import explore, health, passthrough, search, writes
from gateway.routes import thumbnails as thumbnail_routes
from gateway.settings import GatewaySettings
from gateway.writer import FanOutWriter, Spool
from services.common.app import add_common_handlers
from services.common.images import DecodeLimits
from services.common.limits import MemoryBudget
from services.common.metrics import ServiceMetrics
from services.common.postgres import PostgresComponent, PostgresSettings, add_unavailable_handler

log = logging.getLogger("ambience.gateway")


def create_app(settings: GatewaySettings | None = None, pg: PostgresSettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    enabled = settings.enabled()
    metrics = ServiceMetrics("gateway")
    clients = ServiceClients(settings, metrics.registry)
    postgres = PostgresComponent(
        pg or PostgresSettings(),
        {COMPONENT: MIGRATIONS, thumbnails.COMPONENT: thumbnails.MIGRATIONS, web.COMPONENT: web.MIGRATIONS},
        "ambience-gateway",
    )
    writer = FanOutWriter(
        settings, clients, Spool(settings.resolved_data_dir() / "spool"), [u.name for u in enabled if u.store]
    )
    reverse_search = ReverseSearch(settings, clients, enabled)
    decode_limits = DecodeLimits(
        max_bytes=settings.max_upload_bytes,
        budget=MemoryBudget(settings.decode_budget_mb << 20, "decode"),
        video_timeout_s=settings.video_timeout_s,
    )
    writer.subscribe(
        thumbnails.ThumbnailKeeper(lambda: writer.catalog.db, settings.thumbnail_size, decode_limits)
    )
    explorer = Explorer(settings, clients, enabled, reverse_search)
    writer.subscribe(explorer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await run_in_threadpool(postgres.open)
        catalog = Catalog(
            db, settings.retry_backoff_s, settings.retry_backoff_max_s, settings.retry_max_attempts
        )
        writer.attach(catalog)
        explorer.attach(catalog)
        reverse_search.attach(catalog)
        await run_in_threadpool(writer.reconcile_spool)
        writer.start()
        log.info("gateway ready: services %s, catalog %s", ", ".join(u.name for u in enabled), db.where)
        try:
            yield
        finally:
            await writer.stop()
            await explorer.stop()
            await clients.close()
            await run_in_threadpool(postgres.close)

    app = FastAPI(
        title="ambience gateway",
        description="One endpoint for the gallery: every service route by name, fan-out add/delete with "
        "retries, fused reverse search.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.writer = writer
    app.state.reverse_search = reverse_search
    add_common_handlers(
        app, metrics, max_upload_bytes=settings.max_upload_bytes, max_json_bytes=settings.max_json_bytes
    )
    add_unavailable_handler(app)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:  # added last: outermost, so preflights never meet the key check
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=[search.FAILED_HEADER],  # a browser gallery may read which services failed
        )

    # On the app itself, not through APIRouter: app.routes then lists every route (tests walk it).
    # Uploads held at once (for their fan-out or search), across both routes.
    inflight = MemoryBudget(settings.max_inflight_bytes, "upload")
    writes.add_routes(app, writer, settings.max_upload_bytes, inflight, decode_limits)
    search.add_routes(
        app, reverse_search, settings.max_upload_bytes, inflight, metrics.registry, decode_limits
    )
    explore.add_routes(app, explorer)
    health.add_routes(app, settings, clients, writer, metrics)
    thumbnail_routes.add_routes(app, writer, settings.thumbnail_size, decode_limits)
    passthrough.add_routes(app, clients, {u.name for u in enabled})
    if settings.web:
        web.add_routes(app, settings.api_key, lambda: writer.catalog.db)
    app.openapi = openapi_with_service_schemas(app, settings, enabled)  # type: ignore[method-assign]
    return app
