"""The gateway (SPEC section 7): one endpoint for the gallery in front of every service.

- every service route proxied by name (bodies streamed);
- ``/calculate_all_image_features`` / ``/delete_all_image_features``: fan-out to every feature
  service, recorded in the catalog (PostgreSQL); parts that fail are retried by a background worker
  from a spool of the uploaded bytes until done;
- ``/reverse_search``: duplicate mode (phash within a distance, optionally local-feature-verified
  crops) and normal mode (all search services at once, fused by weighted reciprocal rank);
- optional API key, CORS, /health with each service's state, /metrics, Swagger at /docs.

All work on one image id is serialised inside the gateway (``KeyedLocks``): the retry of an add can
never overtake the delete that followed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.catalog import COMPONENT, DONE, MIGRATIONS, PENDING, REJECTED, Catalog, CatalogConflict, DuePart
from gateway.fusion import clean_hits, reciprocal_rank_fusion
from gateway.proxy import CallResult, ServiceClients
from gateway.settings import UPSTREAMS, GatewaySettings, Upstream
from services.common.app import add_common_handlers, read_upload
from services.common.metrics import ServiceMetrics
from services.common.postgres import (
    DatabaseUnavailable,
    PostgresComponent,
    PostgresSettings,
    add_unavailable_handler,
)
from services.common.store import ID_MAX

log = logging.getLogger("ambience.gateway")

OPEN_PATHS = frozenset({"/health"})
TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


class ApiKeyMiddleware:
    """Refuse every request but ``OPEN_PATHS`` without the API key (``Authorization: Bearer`` or
    ``X-API-Key``). Sits inside CORS, so browser preflights are still answered."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given is not None and hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        reply = JSONResponse(
            {"detail": "missing or wrong API key (send `Authorization: Bearer KEY` or `X-API-Key: KEY`)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await reply(scope, receive, send)


class KeyedLocks:
    """One asyncio lock per image id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._locks.pop(key, None)


class Spool:
    """Uploaded bytes kept on disk until every service has them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, image_id: int, data: bytes) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{image_id}.{uuid.uuid4().hex[:8]}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        return str(path)

    @staticmethod
    def read(path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    @staticmethod
    def remove(path: str | None) -> None:
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*")) if self.folder.is_dir() else []


class ImageIdBody(BaseModel):
    image_id: int = Field(ge=0, lt=ID_MAX, description="Image id, 0 <= id < 2^63")


class CatalogQuery(BaseModel):
    image_ids: list[int] = Field(max_length=10_000, description="Ids to look up")


def add_outcome(result: CallResult) -> tuple[str, str, str | None]:
    """(catalog status, reply status, detail) of one service's answer to an add."""
    if result.ok:
        return DONE, "ok", None
    if result.status_code == 409:
        return DONE, "ok", "already stored"
    if result.status_code is not None and 400 <= result.status_code < 500:
        return REJECTED, "failed", result.detail
    return PENDING, result.outcome, result.detail


def delete_outcome(result: CallResult) -> tuple[str, str, str | None]:
    if result.ok or (result.status_code is not None and 400 <= result.status_code < 500):
        return DONE, "ok" if result.ok else "failed", result.detail
    return PENDING, result.outcome, result.detail


def create_app(settings: GatewaySettings | None = None, pg: PostgresSettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    enabled = settings.enabled()
    feature_services = [u for u in enabled if u.store]
    search_services = [u for u in enabled if u.search]
    metrics = ServiceMetrics("gateway")
    clients = ServiceClients(settings, metrics.registry)
    pending_gauge = Gauge(
        "ambience_gateway_pending_parts",
        "Image parts waiting for a retry",
        ["service"],
        registry=metrics.registry,
    )
    postgres = PostgresComponent(pg or PostgresSettings(), {COMPONENT: MIGRATIONS}, "ambience-gateway")
    spool = Spool(settings.resolved_data_dir() / "spool")
    locks = KeyedLocks()
    state: dict[str, Any] = {}

    def catalog() -> Catalog:
        if "catalog" not in state:
            raise DatabaseUnavailable("the catalog is not open yet (the gateway is starting)")
        return state["catalog"]

    # -- fan-outs -----------------------------------------------------------------------------

    async def add_to(
        image_id: int, data: bytes, services: list[str]
    ) -> dict[str, tuple[str, str, str | None]]:
        fields = {"image_id": str(image_id)}
        results = await asyncio.gather(
            *(clients.send_image(s, f"/calculate_{UPSTREAMS[s].store}", data, fields) for s in services)
        )
        return {r.service: add_outcome(r) for r in results}

    async def delete_from(image_id: int, services: list[str]) -> dict[str, tuple[str, str, str | None]]:
        body = {"image_id": image_id}
        results = await asyncio.gather(
            *(clients.call(s, f"/delete_{UPSTREAMS[s].store}", json=body) for s in services)
        )
        return {r.service: delete_outcome(r) for r in results}

    async def record(image_id: int, op: str, outcomes: dict[str, tuple[str, str, str | None]]) -> None:
        done = await run_in_threadpool(
            catalog().record, image_id, op, {s: (o[0], o[2]) for s, o in outcomes.items()}
        )
        spool.remove(done)

    async def retry_image(image_id: int, parts: list[DuePart]) -> None:
        async with locks.hold(image_id):
            current = []
            for part in parts:  # the request path may have finished or changed it meanwhile
                now = await run_in_threadpool(catalog().part, image_id, part.service)
                if now is not None and now[1] == PENDING and now[0] == part.op:
                    current.append((part, now[2]))
            if not current:
                return
            op = current[0][0].op
            services = [p.service for p, _ in current]
            if op == "add":
                data = spool.read(current[0][1]) if current[0][1] else None
                if data is None:
                    outcomes = {s: (REJECTED, "failed", "the spooled upload is missing") for s in services}
                else:
                    outcomes = await add_to(image_id, data, services)
            else:
                outcomes = await delete_from(image_id, services)
            await record(image_id, op, outcomes)
            finished = [s for s, o in outcomes.items() if o[0] != PENDING]
            if finished:
                log.info("retry of %s image %d done for %s", op, image_id, ", ".join(finished))

    async def retry_worker() -> None:
        while True:
            try:
                due = await run_in_threadpool(catalog().due, settings.retry_batch)
            except DatabaseUnavailable as exc:
                log.warning("retry worker: %s", exc)
                due = []
            except Exception:
                log.exception("retry worker: reading the catalog failed")
                due = []
            by_image: dict[int, list[DuePart]] = defaultdict(list)
            for part in due:
                by_image[part.image_id].append(part)
            if by_image:
                results = await asyncio.gather(
                    *(retry_image(i, parts) for i, parts in by_image.items()), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(result, DatabaseUnavailable):
                        log.error("retry worker: %r", result)
            if len(due) < settings.retry_batch:
                await asyncio.sleep(settings.retry_interval_s)

    # -- lifecycle ----------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await run_in_threadpool(postgres.open)
        state["catalog"] = Catalog(db, settings.retry_backoff_s, settings.retry_backoff_max_s)
        worker = asyncio.create_task(retry_worker(), name="gateway-retry-worker")
        state["started"] = time.time()
        log.info("gateway ready: services %s, catalog %s", ", ".join(u.name for u in enabled), db.where)
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
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
    add_common_handlers(app, metrics, max_upload_bytes=settings.max_upload_bytes)
    add_unavailable_handler(app)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:  # added last: outermost, so preflights never meet the key check
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )

    # -- fan-out routes -----------------------------------------------------------------------

    @app.post("/calculate_all_image_features", tags=["gateway"])
    async def calculate_all(
        image: Annotated[UploadFile, File(description="The image file")],
        image_id: Annotated[int, Form(ge=0, lt=ID_MAX, description="0 <= image_id < 2^63")],
    ) -> list[dict[str, Any]]:
        """Add an image to every feature service. One entry per service: ``ok``, ``failed`` or
        ``unavailable``; failed and unavailable parts are retried in the background until done."""
        data = await read_upload(image, settings.max_upload_bytes)
        if not data:
            raise HTTPException(422, "the image file is empty")
        names = [u.name for u in feature_services]
        async with locks.hold(image_id):
            path = await run_in_threadpool(spool.write, image_id, data)
            try:
                await run_in_threadpool(catalog().begin_add, image_id, names, path)
            except CatalogConflict as exc:
                spool.remove(path)
                raise HTTPException(409, str(exc)) from exc
            except BaseException:
                spool.remove(path)
                raise
            outcomes = await add_to(image_id, data, names)
            if outcomes and all(o[0] == REJECTED for o in outcomes.values()):
                # Every service refused the input: nothing is stored, nothing to retry.
                await run_in_threadpool(catalog().forget, image_id)
                spool.remove(path)
                details = {s: o[2] for s, o in outcomes.items()}
                first = next(iter(outcomes.values()))[2] or "rejected"
                status = 413 if "413" in first else 422
                raise HTTPException(
                    status, {"message": f"no service accepted the image: {first}", "services": details}
                )
            await record(image_id, "add", outcomes)
        return [
            {"service": s, "status": o[1], **({"detail": o[2]} if o[2] else {})} for s, o in outcomes.items()
        ]

    @app.post("/delete_all_image_features", tags=["gateway"])
    async def delete_all(body: ImageIdBody) -> list[dict[str, Any]]:
        """Delete an image from every feature service; parts that fail are retried in the background.
        A pending add of the same id is cancelled first, so a retry never brings the image back."""
        image_id = body.image_id
        async with locks.hold(image_id):
            old_spool = await run_in_threadpool(
                catalog().begin_delete, image_id, [u.name for u in feature_services]
            )
            spool.remove(old_spool)
            parts = await run_in_threadpool(catalog().status, [image_id])
            names = sorted(parts.get(image_id, {}).get("parts", {}))
            outcomes = await delete_from(image_id, names)
            await record(image_id, "delete", outcomes)
        return [
            {"service": s, "status": o[1], **({"detail": o[2]} if o[2] else {})} for s, o in outcomes.items()
        ]

    @app.post("/catalog_status", tags=["gateway"])
    async def catalog_status(query: CatalogQuery) -> dict[str, Any]:
        """What the catalog knows of these ids: ``complete``, ``pending`` (retries outstanding) or
        ``deleting``, with each service's part. Unknown ids are absent."""
        found = await run_in_threadpool(catalog().status, query.image_ids)
        return {str(k): v for k, v in found.items()}

    @app.get("/catalog_stats", tags=["gateway"])
    async def catalog_stats() -> dict[str, Any]:
        """Images in the catalog, deletions outstanding, pending parts per service, largest id."""
        counts = await run_in_threadpool(catalog().counts)
        counts["spool_files"] = len(spool.files())
        return counts

    # -- reverse search -----------------------------------------------------------------------

    async def search(upstream: Upstream, data: bytes, fields: dict[str, str]) -> CallResult:
        path = f"/{upstream.search}_get_similar_images_by_image_buffer"
        timeout = settings.search_timeout(upstream.name)
        try:
            # The whole call, connection included, is bounded: a hung service is left out.
            return await asyncio.wait_for(
                clients.send_image(upstream.name, path, data, fields, timeout=timeout), timeout
            )
        except TimeoutError:
            return CallResult(upstream.name, "failed", detail=f"no answer within {timeout:g}s")

    @app.post("/reverse_search", tags=["gateway"])
    async def reverse_search(
        image: Annotated[UploadFile, File(description="The query image")],
        find_duplicate: Annotated[
            str, Form(description='"1": duplicate mode; "0" (default): similar images')
        ] = "0",
    ) -> dict[str, Any]:
        """Duplicate mode: ``{"duplicate": [{"image_id", "distance"}]}``, or ``{}`` when there is none.
        Normal mode: each search service's top results (``phash_res``, ``global_features_res``,
        ``local_features_res``, ``color_res``, ``image_text_res``), ``unified_res`` fused by weighted
        reciprocal rank, and ``failed``: the services that contributed nothing and why."""
        data = await read_upload(image, settings.max_upload_bytes)
        if not data:
            raise HTTPException(422, "the image file is empty")
        if find_duplicate.strip().lower() in TRUE_VALUES:
            return await find_duplicates(data)
        replies = await asyncio.gather(
            *(search(u, data, {"k": str(settings.result_k)}) for u in search_services)
        )
        out: dict[str, Any] = {u.result_key: [] for u in UPSTREAMS.values() if u.result_key is not None}
        rankings: dict[str, list[dict[str, Any]]] = {}
        failed: dict[str, str] = {}
        for upstream, reply in zip(search_services, replies, strict=True):
            if reply.ok and isinstance(reply.body, list):
                hits = clean_hits(reply.body, settings.result_k)
                out[upstream.result_key or upstream.name] = hits
                rankings[upstream.name] = hits
            else:
                failed[upstream.name] = f"{reply.outcome}: {reply.detail or 'unexpected reply'}"
        out["unified_res"] = reciprocal_rank_fusion(
            rankings,
            settings.fusion_weights,
            settings.fusion_constant,
            settings.fused_length,
            settings.fusion_max_distance,
            settings.fusion_tie_tolerance,
        )
        out["failed"] = failed
        return out

    async def find_duplicates(data: bytes) -> dict[str, Any]:
        phash = UPSTREAMS["phash"]
        if phash not in enabled:
            raise HTTPException(503, "duplicate search needs the phash service, which is not enabled")
        local = UPSTREAMS["local_features"]
        use_local = settings.duplicate_local_min_inliers > 0 and local in enabled
        calls = [search(phash, data, {"distance_threshold": str(settings.duplicate_distance)})]
        if use_local:
            calls.append(search(local, data, {"k": str(settings.result_k)}))
        replies = await asyncio.gather(*calls)
        if not replies[0].ok:
            # Saying "no duplicate" when phash could not answer would be a lie the gallery acts on.
            raise HTTPException(503, f"phash could not answer: {replies[0].detail}")
        found = {
            h["image_id"]: {"image_id": h["image_id"], "distance": h.get("distance")}
            for h in clean_hits(replies[0].body, 10_000)
        }
        if use_local:
            if replies[1].ok:
                for hit in clean_hits(replies[1].body, settings.result_k):
                    matches = hit.get("matches", 0)
                    if matches >= settings.duplicate_local_min_inliers:
                        entry = found.setdefault(
                            hit["image_id"], {"image_id": hit["image_id"], "distance": None}
                        )
                        entry["matches"] = matches
            else:
                log.warning("duplicate search without local features: %s", replies[1].detail)
        if not found:
            return {}
        ordered = sorted(
            found.values(), key=lambda e: (e["distance"] is None, e["distance"] or 0, -e.get("matches", 0))
        )
        return {"duplicate": ordered}

    # -- health, metrics ----------------------------------------------------------------------

    def runner_mark(name: str) -> str | None:
        path = settings.resolved_runner_state_dir() / f"{name}.unavailable"
        try:
            return path.read_text().strip() or "marked unavailable by the runner"
        except OSError:
            return None

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
                    entry.update({k: v for k, v in check.body.items() if k in ("count", "weights", "model")})
            else:
                mark = runner_mark(upstream.name)
                entry["status"] = "unavailable" if mark else "down"
                entry["detail"] = mark or check.detail
            services[upstream.name] = entry
        try:
            await run_in_threadpool(catalog().db.ping)
            db = {"status": "up", "server": catalog().db.where}
        except DatabaseUnavailable as exc:
            db = {"status": "down", "detail": str(exc)}
        return {"status": "ok", "service": "gateway", "services": services, "catalog": db}

    @app.get("/metrics", response_class=Response, tags=["gateway"])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, calls to each service, parts waiting for a retry."""
        with contextlib.suppress(DatabaseUnavailable):
            counts = await run_in_threadpool(catalog().counts)
            for u in feature_services:
                pending_gauge.labels(u.name).set(counts["pending_parts"].get(u.name, 0))
        return Response(metrics.render(), media_type=metrics.content_type)

    # -- every service route by name ----------------------------------------------------------

    def add_proxy(path: str, service: str) -> None:
        async def proxy(request: Request) -> Response:
            return await clients.forward(request, service)

        proxy.__name__ = f"proxy_{path.strip('/')}"
        app.add_api_route(
            path,
            proxy,
            methods=["POST"],
            tags=[service],
            summary=f"{path} of the {service} service (passed through)",
        )

    for upstream in UPSTREAMS.values():
        for path in upstream.routes():
            add_proxy(path, upstream.name)

    return app
