"""Stacks in one process, for tests whose subject is not the process: every service's app and the
gateway's app in this test process, over a given PostgreSQL database.

A stack starting its services as processes pays, per service, an interpreter that imports FastAPI,
numpy, OpenCV and often torch (seconds of CPU on two cores); here they are imported once per test
session. What stays real:

- the apps are the production ones (``services.common.runner.build_app`` from each registered
  descriptor, ``gateway.app.create_app``), built from settings objects (each service's settings
  class, :class:`GatewaySettings`), each lifespan run once (start-up, shutdown with its snapshot);
- the gateway's calls to a service go through that service's ASGI app (``httpx.ASGITransport``,
  given to ``gateway.proxy.ServiceClients``); while a service is stopped they go to its port, where
  nothing listens, so the gateway meets the real ``ConnectError`` of a service that is down;
- every app is also served over real HTTP (uvicorn) on a free port of 127.0.0.1: the tests speak
  HTTP to the gateway, and to a service directly where they check what it stores.

All apps run on one asyncio loop in a background thread (:class:`LoopThread`); CPU work goes to
the thread pool as in a service process. Tests where the process is the subject (kill -9 and
durability, replicas, ``ambience serve``, keep-alive hostility, memory per process, Dask) keep
:mod:`ambience_support.stacks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from ambience_support.processes import free_port
from ambience_support.stacks import (
    QUICK_GATEWAY_SETTINGS,
    QUICK_SERVICE_SETTINGS,
    DatabaseServer,
    catalog_status,
    wait_complete,
)
from services.common.runner import KEEP_ALIVE_S
from services.registry import SERVICES

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread: where in-process apps live and are served."""

    def __init__(self, name: str = "ambience-apps") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result here."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ while the block runs: for the few settings read from the shared
    ``AMBIENCE_`` environment rather than a service's settings object (random test weights)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class AppServer:
    """An ASGI app, its lifespan run once, served by uvicorn on ``port`` (default: a free one) on the
    loop of ``runner``. ``build`` makes the app: a restart builds a new one, which opens the data
    again as a new process would."""

    def __init__(
        self,
        runner: LoopThread,
        build: Callable[[], FastAPI],
        port: int | None = None,
        start_env: Mapping[str, str] | None = None,
    ) -> None:
        self.runner = runner
        self.build = build
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_env = dict(start_env or {})
        self.app: FastAPI | None = None
        self._lifespan: AbstractAsyncContextManager[Any] | None = None
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.app is not None

    def start(self, timeout: float = 120) -> AppServer:
        with environment(self.start_env):
            self.runner.run(self._start(), timeout)
        return self

    def stop(self) -> None:
        if self.running:
            self.runner.run(self._stop(), 120)

    async def _start(self) -> None:
        assert not self.running, "already running"
        app = self.build()
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",  # run above, once, by us
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        serving = asyncio.get_running_loop().create_task(server.serve())
        while not server.started:
            if serving.done():  # the port could not be bound: say why
                await lifespan.__aexit__(None, None, None)
                serving.result()
                raise RuntimeError(f"uvicorn stopped before serving on port {self.port}")
            await asyncio.sleep(0.01)
        self.app, self._lifespan, self._server, self._serving = app, lifespan, server, serving

    async def _stop(self) -> None:
        assert self._server is not None and self._serving is not None and self._lifespan is not None
        self._server.should_exit = True
        await self._serving
        try:
            await self._lifespan.__aexit__(None, None, None)
        finally:
            self.app = self._lifespan = self._server = self._serving = None


class ServiceTransport(httpx.AsyncBaseTransport):
    """The gateway's way to one in-process service: its ASGI app while it runs, the network (its
    port, closed) while it is stopped."""

    def __init__(self, server: AppServer) -> None:
        self.server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = self.server.app
        if app is None:
            async with httpx.AsyncHTTPTransport() as network:
                return await network.handle_async_request(request)
        # raise_app_exceptions=False: an app that fails answers 500, as over HTTP
        return await httpx.ASGITransport(app, raise_app_exceptions=False).handle_async_request(request)

    async def aclose(self) -> None:
        """Nothing to close: the transport outlives a gateway that is restarted over it."""


def service_settings(name: str, data_dir: Path, settings: Mapping[str, Any] | None = None) -> Any:
    """Registered service ``name``'s settings object: data in ``data_dir``, ``settings`` on top of its
    quick test settings (:data:`ambience_support.stacks.QUICK_SERVICE_SETTINGS`)."""
    values = {**QUICK_SERVICE_SETTINGS.get(name, {}), **(settings or {})}
    return SERVICES[name].settings_class()(data_dir=data_dir, **values)


def service_app_builder(name: str, settings: Any, dsn: str) -> Callable[[], FastAPI]:
    """How to build registered service ``name``'s app from its settings: the service's own
    ``build_app`` (given the database, when it takes one), as ``python -m <service>`` does."""
    from services.common.postgres.database import PostgresSettings
    from services.common.runner import build_app

    descriptor = SERVICES[name]

    def build() -> FastAPI:
        module = __import__(f"{descriptor.module}.service", fromlist=["build_app"])
        own = getattr(module, "build_app", None)
        if own is not None and "pg" in inspect.signature(own).parameters:
            return own(settings, PostgresSettings(dsn=dsn))  # type: ignore[no-any-return]
        return build_app(descriptor, settings)

    return build


#: The shared environment random test weights need (``CommonSettings.allow_random_weights``); set
#: only while a service starts, where its weights are resolved.
RANDOM_WEIGHTS_ENV = {"AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1", "AMBIENCE_DOWNLOAD_MODELS": "0"}


@dataclass
class InProcessService:
    """One service of an in-process stack: ``url`` answers over HTTP while it runs; ``stop()`` and
    ``start()`` take it away and bring it back (a new app over the same data dir)."""

    name: str
    settings: Any
    server: AppServer
    transport: ServiceTransport

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.resolved_data_dir())

    def start(self) -> InProcessService:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


@dataclass
class InProcessStack:
    """Services and the gateway in this process; the same reading interface as
    :class:`ambience_support.stacks.GatewayStack` (``url``, ``services[name].url``, ``catalog``,
    ``wait_complete``, ``stop``)."""

    runner: LoopThread
    services: dict[str, InProcessService]
    gateway: AppServer
    dsn: str
    gateway_settings: Any
    owns_runner: bool = True
    stopped: bool = field(default=False)
    #: Further gateways over the same services and catalog (:meth:`another_gateway`).
    more_gateways: list[AppServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def gateway_app(self) -> FastAPI:
        assert self.gateway.app is not None
        return self.gateway.app

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            for gateway in [*self.more_gateways, self.gateway]:
                gateway.stop()
        finally:
            for service in self.services.values():
                service.stop()
            if self.owns_runner:
                self.runner.close()

    def another_gateway(self, data_dir: Path, **settings: Any) -> AppServer:
        """A second gateway, started, over the same services and catalog: this stack's gateway
        settings with its own data dir and ``settings`` on top."""
        from gateway.app import create_app
        from services.common.postgres.database import PostgresSettings

        config = self.gateway_settings.model_copy(update={"data_dir": data_dir, **settings})
        transports = {name: service.transport for name, service in self.services.items()}
        server = AppServer(
            self.runner, lambda: create_app(config, PostgresSettings(dsn=self.dsn), transports)
        )
        self.more_gateways.append(server.start())
        return server

    def catalog(self, image_ids: list[int]) -> dict[str, Any]:
        return catalog_status(self.url, image_ids)

    def wait_complete(self, image_ids: list[int], timeout: float = 60) -> dict[str, Any]:
        return wait_complete(self.url, image_ids, timeout)

    def __enter__(self) -> InProcessStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_inprocess_services(
    runner: LoopThread,
    tmp: Path,
    dsn: str,
    names: list[str],
    service_settings_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, InProcessService]:
    """Registered services ``names`` in this process, each served on a free port (data under
    ``tmp/<name>``), all started or none."""
    overrides = service_settings_overrides or {}
    services: dict[str, InProcessService] = {}
    try:
        for name in names:
            settings = service_settings(name, tmp / name, overrides.get(name))
            server = AppServer(runner, service_app_builder(name, settings, dsn), start_env=RANDOM_WEIGHTS_ENV)
            services[name] = InProcessService(name, settings, server, ServiceTransport(server))
            server.start()
    except BaseException:
        for service in services.values():
            service.stop()
        raise
    return services


def start_inprocess_stack(
    tmp: Path,
    dsn: str,
    names: list[str],
    gateway: Mapping[str, Any] | None = None,
    services: Mapping[str, Mapping[str, Any]] | None = None,
) -> InProcessStack:
    """Registered services ``names`` and the gateway fanning out to them, in this process, over the
    database ``dsn`` (a new one per stack: ``pg_server.new_database()``). ``gateway``: GatewaySettings
    values on top of the quick test ones; ``services``: per service, settings on top of its quick
    test ones."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from services.common.postgres.database import PostgresSettings

    runner = LoopThread()
    try:
        running = start_inprocess_services(runner, tmp, dsn, names, services)
    except BaseException:
        runner.close()
        raise
    try:
        settings = GatewaySettings(
            data_dir=tmp / "gateway",
            runner_state_dir=tmp / "run",
            services=names,
            service_urls={name: service.url for name, service in running.items()},
            **{**QUICK_GATEWAY_SETTINGS, **(gateway or {})},
        )
        transports = {name: service.transport for name, service in running.items()}
        server = AppServer(runner, lambda: create_app(settings, PostgresSettings(dsn=dsn), transports))
        server.start()
    except BaseException:
        for service in running.values():
            service.stop()
        runner.close()
        raise
    return InProcessStack(runner, running, server, dsn, settings)


@contextlib.contextmanager
def inprocess_stack(
    tmp: Path,
    pg_server: DatabaseServer,
    names: list[str],
    gateway: Mapping[str, Any] | None = None,
    services: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[InProcessStack]:
    """:func:`start_inprocess_stack` over a new database of ``pg_server``, stopped afterwards."""
    stack = start_inprocess_stack(tmp, pg_server.new_database("gateway"), names, gateway, services)
    try:
        yield stack
    finally:
        stack.stop()


@contextlib.contextmanager
def inprocess_services(
    tmp: Path,
    dsn: str,
    names: list[str],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[dict[str, InProcessService]]:
    """Registered services ``names`` in this process, each served over HTTP on a free port (no
    gateway: for tests that drive the gateway's parts themselves), stopped afterwards."""
    runner = LoopThread()
    try:
        running = start_inprocess_services(runner, tmp, dsn, names, settings)
        try:
            yield running
        finally:
            for service in running.values():
                service.stop()
    finally:
        runner.close()
