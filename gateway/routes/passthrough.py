"""Every service route by name, passed through to its service with the body streamed both ways."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from gateway.proxy import ServiceClients
from gateway.settings import UPSTREAMS


def add_routes(app: FastAPI, clients: ServiceClients) -> None:
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
