"""An HTTP proxy in front of a real service, as a gallery's infrastructure may put one there.

:class:`RateLimitingProxy` answers ``429 Too Many Requests`` to the first ``refuse_first`` requests
of each path and forwards everything else, unchanged, to the service behind it: how the gateway
treats a rate limiter it does not control, with the real service doing the work.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx


class RateLimitingProxy:
    """A threaded proxy on a free local port; ``refused`` counts the 429s per path."""

    def __init__(self, upstream: str, refuse_first: int = 1) -> None:
        self.upstream = upstream.rstrip("/")
        self.refuse_first = refuse_first
        self.refused: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy._seen[self.path] += 1
                    refuse = proxy._seen[self.path] <= proxy.refuse_first
                    if refuse:
                        proxy.refused[self.path] += 1
                if refuse:
                    payload = b'{"detail": "too many requests"}'
                    self.send_response(429)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                reply = httpx.request(
                    method, proxy.upstream + self.path, content=body, headers=headers, timeout=30
                )
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RateLimitingProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
