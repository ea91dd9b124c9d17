"""Calls from the gateway to the services: one pooled ``httpx.AsyncClient`` for all of them.

``forward`` passes a request through by route name with the body streamed both ways (an upload is
never held whole in the gateway). The other helpers make one call and classify its outcome the way
the fan-outs need it: ``ok``, ``failed`` (the service answered with an error or was too slow) or
``unavailable`` (nothing listens at its address).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.background import BackgroundTask

from gateway.settings import GatewaySettings

#: Request headers passed on to a service (hop-by-hop and auth headers stay at the gateway).
FORWARDED_REQUEST_HEADERS = ("content-type", "content-length", "accept", "accept-encoding")
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-encoding", "retry-after")


@dataclass
class CallResult:
    """The outcome of one call to a service."""

    service: str
    outcome: str  # ok | failed | unavailable
    status_code: int | None = None
    body: Any = None
    detail: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def error_detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if not isinstance(detail, str):
        detail = str(detail)
    return f"HTTP {response.status_code}: {detail[:300]}"


#: Idle pooled connections are dropped after this long: well before the services close them
#: (services.common.runner.KEEP_ALIVE_S), so a request never goes out on a connection being closed.
POOL_IDLE_S = 4.0


class ServiceClients:
    """``transports``: per service name, the transport its calls go through instead of the network
    (an in-process stack passes each service's ASGI app here)."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: CollectorRegistry,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.settings = settings
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=POOL_IDLE_S,
        )
        mounts = {settings.url(name): transport for name, transport in (transports or {}).items()}
        self.client = httpx.AsyncClient(limits=limits, timeout=settings.timeout_s, mounts=mounts)
        self.calls = Counter(
            "ambience_gateway_upstream_calls", "Calls to services", ["service", "outcome"], registry=registry
        )
        self.latency = Histogram(
            "ambience_gateway_upstream_seconds",
            "Latency of calls to services",
            ["service"],
            registry=registry,
        )

    async def close(self) -> None:
        await self.client.aclose()

    def url(self, service: str, path: str) -> str:
        return self.settings.url(service) + path

    # -- pass-through -------------------------------------------------------------------------

    async def forward(self, request: Request, service: str) -> Response:
        """``request`` sent on to ``service`` unchanged (same path, query, body), reply streamed back."""
        url = self.url(service, request.url.path)
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
        timeout = self.settings.timeout(service)
        upstream = self.client.build_request(
            request.method, url, headers=headers, content=request.stream(), timeout=timeout
        )
        started = time.perf_counter()
        try:
            reply = await self.client.send(upstream, stream=True)
        except httpx.ConnectError as exc:
            self.calls.labels(service, "unavailable").inc()
            return JSONResponse(
                {"detail": f"service {service} is unavailable at {self.settings.url(service)}: {exc}"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        except httpx.TimeoutException:
            self.calls.labels(service, "failed").inc()
            return JSONResponse(
                {"detail": f"service {service} did not answer within {timeout:g}s"}, status_code=504
            )
        except httpx.HTTPError as exc:
            self.calls.labels(service, "failed").inc()
            return JSONResponse({"detail": f"service {service} failed: {exc}"}, status_code=502)
        self.calls.labels(service, "ok" if reply.status_code < 500 else "failed").inc()
        self.latency.labels(service).observe(time.perf_counter() - started)
        headers = {k: v for k, v in reply.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
        return StreamingResponse(
            reply.aiter_raw(),
            status_code=reply.status_code,
            headers=headers,
            background=BackgroundTask(reply.aclose),
        )

    # -- single calls for the fan-outs --------------------------------------------------------

    async def call(
        self,
        service: str,
        path: str,
        *,
        timeout: float | None = None,
        json: Any = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> CallResult:
        timeout = timeout if timeout is not None else self.settings.timeout(service)
        started = time.perf_counter()
        try:
            reply = await self.client.post(
                self.url(service, path), json=json, files=files, data=data, timeout=timeout
            )
        except httpx.ConnectError as exc:
            result = CallResult(
                service, "unavailable", detail=f"not reachable at {self.settings.url(service)}: {exc}"
            )
        except httpx.TimeoutException:
            result = CallResult(service, "failed", detail=f"no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            result = CallResult(service, "failed", detail=f"{type(exc).__name__}: {exc}")
        else:
            if reply.status_code == 200:
                try:
                    result = CallResult(service, "ok", 200, reply.json())
                except ValueError:
                    result = CallResult(service, "failed", 200, detail="reply is not JSON")
            else:
                result = CallResult(service, "failed", reply.status_code, detail=error_detail(reply))
        result.seconds = time.perf_counter() - started
        self.calls.labels(service, result.outcome).inc()
        self.latency.labels(service).observe(result.seconds)
        return result

    async def send_image(
        self, service: str, path: str, image: bytes, fields: dict[str, str], timeout: float | None = None
    ) -> CallResult:
        # "document" is the file name the upstream gallery's form-data sends; services ignore it.
        files = {"image": ("document", image, "application/octet-stream")}
        return await self.call(service, path, files=files, data=fields, timeout=timeout)

    async def health(self, service: str) -> CallResult:
        started = time.perf_counter()
        try:
            reply = await self.client.get(
                self.url(service, "/health"), timeout=self.settings.health_timeout_s
            )
        except httpx.ConnectError as exc:
            return CallResult(service, "unavailable", detail=str(exc))
        except httpx.HTTPError as exc:
            return CallResult(service, "failed", detail=f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        if reply.status_code != 200:
            return CallResult(
                service, "failed", reply.status_code, detail=error_detail(reply), seconds=seconds
            )
        try:
            body = reply.json()
        except ValueError:
            body = None
        return CallResult(service, "ok", 200, body, seconds=seconds)
