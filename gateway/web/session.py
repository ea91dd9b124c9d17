"""The page's sign-in: a cookie that stands for the API key, and the rule that keeps it safe.

The cookie holds ``HMAC(key, purpose)``, not the key: a leaked cookie opens the page and the API of
this gateway but does not reveal the key to put in other clients, and changing the key signs every
browser out. It is HttpOnly (scripts cannot read it) and SameSite=Strict (browsers do not send it
with requests started by another site). On top of that, a request authenticated by the cookie alone
may only read (GET/HEAD) unless it carries the ``X-Ambience-Page`` header that the page's script
adds: a cross-site form cannot set a header, and a cross-site script that tries needs a CORS
preflight the gateway does not grant.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "ambience_session"
PAGE_HEADER = "x-ambience-page"
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: A week: the page is for people at their own box; signing in again is one field.
MAX_AGE_S = 7 * 24 * 3600


def token(api_key: str) -> str:
    return hmac.new(api_key.encode(), b"ambience page session v1", hashlib.sha256).hexdigest()


def key_matches(given: str, api_key: str) -> bool:
    return hmac.compare_digest(given.encode(), api_key.encode())


def cookie_value(cookie_header: str) -> str | None:
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def cookie_grants(headers: Mapping[bytes, bytes], method: str, api_key: str) -> bool:
    """Whether the session cookie in ``headers`` authorises this request (see the module doc)."""
    value = cookie_value(headers.get(b"cookie", b"").decode("latin-1"))
    if value is None or not hmac.compare_digest(value.encode(), token(api_key).encode()):
        return False
    return method in SAFE_METHODS or PAGE_HEADER.encode() in headers


def authorised(request: Request, api_key: str) -> bool:
    value = request.cookies.get(COOKIE)
    return value is not None and hmac.compare_digest(value.encode(), token(api_key).encode())


def set_cookie(response: Response, api_key: str) -> None:
    response.set_cookie(
        COOKIE,
        token(api_key),
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
    )
