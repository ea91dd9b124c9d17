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
- ``/moments``, ``/map``: the collection explored, clustering run inside the vector services
  (gateway/explore.py, gateway/routes/explore.py); ``/duplicate_groups``: copies and near shots
  (gateway/duplicates/, gateway/routes/duplicates.py);
- ``/library``, ``/places``, ``/trips``, ``/events``, ``/on_this_day``: the library newest first
  with filters, places from GPS, moments that know time and place (gateway/library/,
  gateway/routes/library.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from gateway import thumbnails, web
from gateway.after_add import AfterAdd
from gateway.auth import ApiKeyMiddleware
from gateway.backlog import Backlog
from gateway.catalog import Catalog
from gateway.duplicates import schema as duplicates_schema
from gateway.duplicates.links import PostgresLinkStore
from gateway.duplicates.service import DuplicateGroups
from gateway.explore import Explorer
from gateway.image_facts import ImageFacts
from gateway.library import Library
from gateway.library import schema as library_schema
from gateway.openapi import openapi_with_service_schemas
from gateway.people import schema as people_schema
from gateway.people.rebuild import PeopleRebuild
from gateway.people.service import FACES, People
from gateway.proxy import ServiceClients
from gateway.retries import RetryWorker
from gateway.reverse_search import ReverseSearch
from gateway.routes import duplicates as duplicate_routes
from gateway.routes import explore, health, passthrough, search, writes
from gateway.routes import library as library_routes
from gateway.routes import people as people_routes
from gateway.routes import thumbnails as thumbnail_routes
from gateway.runner_marks import RunnerMarks
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources
from gateway.writer import FanOutWriter, KeyedLocks, Spool
from services.common.app import add_common_handlers, add_unavailable_handler
from services.common.features.storage import replica_name
from services.common.images import DecodeLimits
from services.common.limits import MemoryBudget
from services.common.metrics import ServiceMetrics
from services.common.postgres.database import PostgresComponent, PostgresSettings

log = logging.getLogger("ambience.gateway")


def create_app(
    settings: GatewaySettings | None = None,
    pg: PostgresSettings | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """The gateway app; ``transports`` (per service name) replace the network for those services'
    calls (gateway.proxy.ServiceClients)."""
    settings = settings or GatewaySettings()
    enabled = settings.enabled()
    names = {u.name for u in enabled}
    stored_by = [u.name for u in enabled if u.store]
    metrics = ServiceMetrics("gateway")
    clients = ServiceClients(settings, metrics.registry, transports)
    # services `ambience serve` could not start for a lasting reason: left out of adds, not waited for
    marks = RunnerMarks(settings.resolved_runner_state_dir())
    # Every store below is built over the component now and answers DatabaseUnavailable (503) until
    # the lifespan has opened it.
    postgres = PostgresComponent(
        pg or PostgresSettings(),
        {
            COMPONENT: MIGRATIONS,
            thumbnails.COMPONENT: thumbnails.MIGRATIONS,
            web.COMPONENT: web.MIGRATIONS,
            people_schema.COMPONENT: people_schema.MIGRATIONS,
            library_schema.COMPONENT: library_schema.MIGRATIONS,
            # after the gateway's own: it alters the links' tables
            duplicates_schema.COMPONENT: duplicates_schema.MIGRATIONS,
        },
        "ambience-gateway",
    )
    links = PostgresLinkStore(postgres)
    #: Who this gateway is among replicas on one catalog: it takes the steps of its own adds first.
    replica = replica_name(settings.resolved_data_dir())
    catalog = Catalog(
        postgres,
        settings.retry_backoff_s,
        settings.retry_backoff_max_s,
        settings.retry_max_attempts,
        removals=links,
        replica=replica,
    )
    backlog = Backlog(postgres)
    facts = ImageFacts(postgres)
    reverse_search = ReverseSearch(settings, clients, enabled, facts, marks)
    sources = AnalysisSources(settings, clients, enabled, marks)
    explorer = Explorer(settings, sources, facts)
    library = Library.build(settings, postgres, clients, names, explorer)
    duplicates = DuplicateGroups.build(settings, clients, sources, reverse_search, facts, links, postgres)
    decode_limits = DecodeLimits(
        max_bytes=settings.max_upload_bytes,
        budget=MemoryBudget(settings.decode_budget_mb << 20, "decode"),
        video_timeout_s=settings.video_timeout_s,
    )
    spool, locks = Spool(settings.resolved_data_dir() / "spool"), KeyedLocks()
    # The faces of every image grouped into people, when the faces service is enabled.
    people = People(settings, clients, postgres, decode_limits) if FACES in names else None
    people_rebuild = PeopleRebuild(people) if people is not None else None
    # What follows every add, in this order: the facts (capture times, exposures, sizes), which the
    # links read; the library row and place; the thumbnail, which the copies' crop alignment and
    # the sharpness read; the sharpness and the duplicate links of each kind; the people in it.
    after_add = AfterAdd(
        settings,
        [
            facts,
            library.step,
            thumbnails.ThumbnailKeeper(postgres, settings.thumbnail_size, decode_limits),
            *duplicates.steps(),
            *([people] if people is not None else []),
        ],
        catalog,
        backlog,
        spool,
        locks,
        replica=replica,
        marks=marks,
    )
    writer = FanOutWriter(settings, clients, spool, stored_by, catalog, backlog, after_add, locks, marks)
    retries = RetryWorker(settings, clients, backlog, writer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(postgres.open)
        await run_in_threadpool(writer.reconcile_spool)
        retries.start()
        await after_add.start()
        if people is not None:
            await people.start()
        await library.start()
        log.info("gateway ready: services %s, catalog %s", ", ".join(names), postgres.where)
        try:
            yield
        finally:
            await retries.stop()
            await after_add.stop()
            await library.stop()
            await duplicates.stop()
            if people is not None:
                await people.stop()
                await people_rebuild.stop()  # type: ignore[union-attr]
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
    app.state.duplicates = duplicates
    app.state.after_add = after_add
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
    writes.add_routes(app, writer, retries, settings.max_upload_bytes, inflight, decode_limits)
    search.add_routes(
        app, reverse_search, settings.max_upload_bytes, inflight, metrics.registry, decode_limits
    )
    more_info = [library.place_info, *([people.image_info] if people is not None else [])]
    explore.add_routes(app, explorer, facts, more_info)
    people_routes.add_routes(app, people, people_rebuild, settings.max_upload_bytes, inflight, decode_limits)
    library_routes.add_routes(app, library, settings.on_this_day_window_days)
    duplicate_routes.add_routes(app, duplicates, writer.delete)
    health.add_routes(app, settings, clients, backlog, postgres, stored_by, metrics)
    thumbnail_routes.add_routes(
        app, postgres, backlog, clients, stored_by, settings.thumbnail_size, decode_limits
    )
    passthrough.add_routes(app, clients, names)
    if settings.web:
        web.add_routes(app, settings.api_key, postgres)
    app.openapi = openapi_with_service_schemas(app, settings, enabled)  # type: ignore[method-assign]
    return app
