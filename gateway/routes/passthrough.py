"""Every service route by name, passed through to its service with the body streamed both ways."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway.proxy import ServiceClients
from gateway.settings import UPSTREAMS


def disabled_reply(service: str) -> JSONResponse:
    """A disabled service is never proxied: its default port may belong to another program."""
    return JSONResponse(
        {
            "detail": f"the {service} service is not enabled in this gateway "
            f"(AMBIENCE_GATEWAY_SERVICES); add it there to use this route"
        },
        status_code=404,
    )


def add_routes(app: FastAPI, clients: ServiceClients, enabled: set[str]) -> None:
    def add_proxy(path: str, service: str) -> None:
        async def proxy(request: Request) -> Response:
            if service not in enabled:
                return disabled_reply(service)
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
