"""A small HTTP file server for download tests: Range requests, dropped connections, slow links,
servers that ignore ranges, and a Hugging Face style redirect that announces the file's sha256.

Runs in a thread on 127.0.0.1 (no internet needed). Every request is logged, so tests can see what
was asked for (``Range``) and how many body bytes were sent.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Served:
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class WeightsServer:
    files: dict[str, bytes] = field(default_factory=dict)
    #: name -> bytes to send before dropping the connection (first request for that name only).
    drop_after: dict[str, int] = field(default_factory=dict)
    #: names served with 200 and the whole body even when a Range is asked for.
    ignore_range: set[str] = field(default_factory=set)
    #: seconds to sleep after each 16 KiB chunk (a slow link, for kill-mid-download tests).
    chunk_delay: float = 0.0
    log: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server._in_flight += 1
                try:
                    server._handle(self)
                finally:
                    with server._lock:
                        server._in_flight -= 1

        self._lock = threading.Lock()
        self._in_flight = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/files/{name}"

    def hub_url(self, name: str, announced_sha256: str | None = None) -> str:
        """A /resolve/ URL that redirects to the file with ``X-Linked-Etag`` (default: its real sha256)."""
        sha = announced_sha256 or hashlib.sha256(self.files[name]).hexdigest()
        return f"{self.base_url}/hub/{name}?announce={sha}"

    def requests_for(self, name: str) -> list[Served]:
        """The requests for ``name`` so far, once the ones in flight are logged (a client may have
        its whole answer before the server thread has written its log line)."""
        deadline = time.monotonic() + 5
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        return [r for r in self.log if r.path.endswith("/" + name) and r.path.startswith("/files/")]

    def __enter__(self) -> WeightsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path
        hub = re.match(r"^/hub/([^?]+)\?announce=([0-9a-f]{64})$", path)
        if hub:
            req.send_response(302)
            req.send_header("Location", f"/files/{hub.group(1)}")
            req.send_header("X-Linked-Etag", f'"{hub.group(2)}"')
            req.send_header("X-Linked-Size", str(len(self.files.get(hub.group(1), b""))))
            req.send_header("Content-Length", "0")
            req.end_headers()
            self.log.append(Served(path, None, 302, 0))
            return
        name = path.rsplit("/", 1)[-1]
        if not path.startswith("/files/") or name not in self.files:
            req.send_error(404)
            self.log.append(Served(path, None, 404, 0))
            return
        data = self.files[name]
        asked = req.headers.get("Range")
        start = 0
        m = re.match(r"bytes=(\d+)-$", asked or "")
        if m and name not in self.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                req.send_response(416)
                req.send_header("Content-Range", f"bytes */{len(data)}")
                req.send_header("Content-Length", "0")
                req.end_headers()
                self.log.append(Served(path, asked, 416, 0))
                return
            req.send_response(206)
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            req.send_response(200)
        req.send_header("Content-Length", str(len(data) - start))
        req.send_header("Accept-Ranges", "bytes")
        req.end_headers()
        limit = len(data)
        if name in self.drop_after:
            limit = min(limit, start + self.drop_after.pop(name))
        sent = 0
        try:
            for pos in range(start, limit, 16384):
                chunk = data[pos : min(pos + 16384, limit)]
                req.wfile.write(chunk)
                sent += len(chunk)
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
            req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client went away (killed)
            pass
        finally:
            self.log.append(Served(path, asked, 206 if start else 200, sent))
        req.close_connection = True
