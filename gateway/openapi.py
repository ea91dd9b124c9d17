"""The gateway's OpenAPI document, with each pass-through route described by its service's own
schema (request body, parameters, responses), so Swagger's "Try it out" can upload through the
gateway. A service's schema is fetched from its /openapi.json when the document is first asked
for, and again later while the service does not answer (its routes keep a bare entry until then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.settings import GatewaySettings, Upstream

log = logging.getLogger("ambience.gateway")

#: How long the document waits for a service's schema (it is built once, when /docs is opened).
SCHEMA_TIMEOUT_S = 3.0


def merge_service_schema(document: dict[str, Any], service: dict[str, Any], paths: list[str]) -> None:
    """Copy the operations of ``paths`` and the component schemas they use from ``service``'s
    OpenAPI document into the gateway's ``document`` (keeping the gateway's tags)."""
    for path in paths:
        theirs = service.get("paths", {}).get(path, {}).get("post")
        ours = document.get("paths", {}).get(path, {}).get("post")
        if theirs is None or ours is None:
            continue
        document["paths"][path]["post"] = {
            **theirs,
            "tags": ours.get("tags", []),
            "operationId": ours.get("operationId", theirs.get("operationId")),
        }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in service.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(name, schema)


def fetch_schema(url: str) -> dict[str, Any] | None:
    try:
        reply = httpx.get(url + "/openapi.json", timeout=SCHEMA_TIMEOUT_S)
        reply.raise_for_status()
        return reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.info("OpenAPI of %s not available yet (%s)", url, exc)
        return None


def openapi_with_service_schemas(
    app: FastAPI, settings: GatewaySettings, enabled: list[Upstream]
) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi`` (see the module docstring)."""
    fetched: dict[str, dict[str, Any]] = {}

    def build() -> dict[str, Any]:
        missing = [u for u in enabled if u.name not in fetched]
        if missing or app.openapi_schema is None:
            with ThreadPoolExecutor(max(len(missing), 1)) as pool:
                for upstream, schema in zip(
                    missing, pool.map(lambda u: fetch_schema(settings.url(u.name)), missing), strict=True
                ):
                    if schema is not None:
                        fetched[upstream.name] = schema
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for upstream in enabled:
                if upstream.name in fetched:
                    merge_service_schema(document, fetched[upstream.name], list(upstream.routes()))
            app.openapi_schema = document
        return app.openapi_schema

    return build
