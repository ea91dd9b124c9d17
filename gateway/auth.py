"""The gateway's optional API key: an ASGI middleware in front of every route but /health."""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.web import session

#: Routes answered without the key: a load balancer's health probe has none (/health then says
#: only up, degraded or down), and the page's entry and sign-in (``/`` redirects to the sign-in
#: form when the cookie is missing).
OPEN_PATHS = frozenset({"/health", "/", "/ui/login", "/ui/app.css"})


def authorised(scope: Scope, key: bytes) -> bool:
    """Whether the request carries ``key`` (``X-API-Key`` or ``Authorization: Bearer``) or the
    page's session cookie grants it (:func:`gateway.web.session.cookie_grants`)."""
    headers = dict(scope["headers"])
    given = headers.get(b"x-api-key")
    auth = headers.get(b"authorization", b"")
    if given is None and auth[:7].lower() == b"bearer ":
        given = auth[7:].strip()
    if given is not None and hmac.compare_digest(given, key):
        return True
    return session.cookie_grants(headers, scope["method"], key.decode())


class ApiKeyMiddleware:
    """Refuse every request but ``OPEN_PATHS`` without the API key (``Authorization: Bearer`` or
    ``X-API-Key``, or the page's session cookie under :func:`gateway.web.session.cookie_grants`'s
    rule). Sits inside CORS, so browser preflights are still answered."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if authorised(scope, self.key):
            await self.app(scope, receive, send)
            return
        reply = JSONResponse(
            {"detail": "missing or wrong API key (send `Authorization: Bearer KEY` or `X-API-Key: KEY`)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await reply(scope, receive, send)
