"""Request limits every ambience app shares: body sizes counted while they stream, result counts,
and error replies that can always be serialised.

Kept as small standalone pieces (an ASGI middleware, two functions) so any app shell can use them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Multipart framing (boundaries, part headers, form fields) allowed on top of the upload itself.
FORM_OVERHEAD = 1 << 20
#: Longest string input echoed back in a validation error.
ECHO_CHARS = 200


class BudgetFull(Exception):
    """A :class:`MemoryBudget` cannot take more now: HTTP 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class MemoryBudget:
    """Bounds the bytes that requests in flight may hold at once in one process (images being
    decoded, uploads being fanned out).

    A request reserves what it will hold before it holds it; one that does not fit while others
    run is refused (:class:`BudgetFull`, a 503 with Retry-After) rather than queued, so a burst of
    huge requests cannot pile up in memory. One request alone is always admitted: the size limits
    already bound it, and refusing it forever would make a valid request unusable.
    """

    def __init__(self, capacity_bytes: int, what: str) -> None:
        self.capacity = capacity_bytes
        self.what = what
        self.used = 0
        self._lock = threading.Lock()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        with self._lock:
            if self.used and self.used + cost > self.capacity:
                raise BudgetFull(
                    f"too busy: {self.used >> 20} MiB of the {self.capacity >> 20} MiB {self.what} "
                    f"budget are in use and this request needs {max(1, cost >> 20)} MiB; retry shortly"
                )
            self.used += cost
        try:
            yield
        finally:
            with self._lock:
                self.used -= cost


class BodyTooLarge(Exception):
    """Raised into the app's body reader once the body passes its limit."""


class BodyLimitMiddleware:
    """Refuse request bodies past a limit with 413, counting bytes as they arrive.

    A declared Content-Length over the limit is refused before anything is read; a chunked body
    (no Content-Length) is cut off at the limit, so neither memory nor the multipart spool ever
    holds more. Multipart bodies (uploads) get ``upload_limit`` plus the form framing; every other
    body (JSON) gets ``json_limit``. The server discards the unread rest of the body, so a
    kept-alive connection stays usable for the next request.
    """

    def __init__(self, app: ASGIApp, upload_limit: int, json_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit
        self.json_limit = json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        upload = headers.get("content-type", "").lower().startswith("multipart/")
        limit = self.upload_limit + FORM_OVERHEAD if upload else self.json_limit
        what = f"the upload limit of {self.upload_limit} bytes" if upload else f"the limit of {limit} bytes"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(f"request body of {declared} bytes exceeds {what}")(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's reply to a cut-off body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:  # the body reader may wrap BodyTooLarge in its own error
                raise
        if exceeded and not started:
            await _too_large(f"request body exceeds {what} (counted while receiving)")(scope, receive, send)


def _too_large(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=413)


def check_k(k: int | None, max_k: int, setting: str) -> None:
    """422 when a search asks for more results than the service gives (``setting``: its env var)."""
    if k is not None and k > max_k:
        raise HTTPException(422, f"k is {k}; at most {max_k} ({setting})")


def echoable(value: Any) -> bool:
    """Whether a request value can be echoed in a JSON error (NaN and infinity cannot)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, bool | int | str)


def safe_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors without what cannot or should not be echoed: ``ctx`` (may hold
    exception objects), non-finite or non-scalar inputs (a NaN would make the reply itself fail
    with a 500 and drop the connection), and long strings (cut)."""
    out = []
    for err in errors:
        clean: dict[str, Any] = {}
        for key, value in err.items():
            if key == "ctx":
                continue
            if key == "input":
                if not echoable(value):
                    continue
                if isinstance(value, str) and len(value) > ECHO_CHARS:
                    value = value[:ECHO_CHARS] + "..."
            if key == "loc":
                value = [part if echoable(part) else str(part) for part in value]
            clean[key] = value
        out.append(clean)
    return out
