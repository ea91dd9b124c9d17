"""Run one service as a process: ``python -m services.<name>``, its app built from its descriptor
(:func:`build_app`)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from services.common.descriptor import ServiceDescriptor, load_attr
from services.common.errors import EXIT_STARTUP_FAILED, StartupError, StoreMismatchError
from services.common.settings import ServiceSettings

log = logging.getLogger("ambience")


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


#: How long a service keeps an idle connection open. Longer than the gateway keeps idle pooled
#: connections (gateway.proxy.POOL_IDLE_S): a client that reuses a connection the server is closing
#: at that moment gets a ReadError, so the client must always be the one to let go first.
KEEP_ALIVE_S = 30


def run_app(settings: ServiceSettings, build: Callable[[ServiceSettings], FastAPI]) -> None:
    """Serve ``build(settings)`` with uvicorn; exit 2 for missing weights, 3 for other refusals."""
    configure_logging()
    app = build(settings)
    failure: list[BaseException] = []

    # Remember why start-up failed, so the exit code can say it (uvicorn only logs it).
    original = app.router.lifespan_context

    def guarded(a: FastAPI):  # type: ignore[no-untyped-def]
        ctx = original(a)

        class Guard:
            async def __aenter__(self) -> None:
                try:
                    return await ctx.__aenter__()
                except BaseException as exc:
                    failure.append(exc)
                    raise

            async def __aexit__(self, *exc: object) -> bool | None:
                return await ctx.__aexit__(*exc)

        return Guard()

    app.router.lifespan_context = guarded
    # A refusal we explain in one line (missing weights, bad settings) needs no traceback from uvicorn.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: not (failure and isinstance(failure[0], StartupError | StoreMismatchError))
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.resolved_port(),
        log_level="info",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:
        # uvicorn >= 0.30 exits with its own code 3 when the lifespan fails; ours say why.
        if server.started or not failure:
            raise
    if not server.started:
        exc = failure[0] if failure else None
        if isinstance(exc, StartupError):
            log.error("%s: %s", settings.service_name, exc)
            sys.exit(exc.exit_code)
        if isinstance(exc, StoreMismatchError):
            log.error("%s: %s", settings.service_name, exc)
        sys.exit(EXIT_STARTUP_FAILED)


def build_app(descriptor: ServiceDescriptor, settings: Any = None) -> FastAPI:
    """The service's FastAPI app with ``settings`` (default: from the environment): the
    descriptor's ``app`` function, else the service module's ``build_app``, else the kit's feature
    app around the descriptor's feature class."""
    settings = settings if settings is not None else descriptor.settings_class()()
    if descriptor.app:
        return load_attr(descriptor.app)(settings)
    own_app = getattr(importlib.import_module(f"{descriptor.module}.service"), "build_app", None)
    if own_app is not None:
        return own_app(settings)
    feature_cls = descriptor.feature_class()
    if feature_cls is None:
        raise ValueError(f"service {descriptor.name!r} names neither an app nor a feature class")
    from services.common.features.app import create_app

    return create_app(feature_cls(settings))


def run_service(descriptor: ServiceDescriptor) -> None:
    """``python -m <service>``: the descriptor's app with settings from the environment."""
    run_app(descriptor.settings_class()(), lambda settings: build_app(descriptor, settings))
