"""Robust file download for model weights and label files (``ambience models fetch``).

:func:`download` fetches one URL into a file and installs it only when it is complete and verified:

- Bytes go to ``<file>.part``. An interrupted transfer (network error, timeout, the process killed)
  leaves the ``.part`` behind, and the next attempt asks for the rest with an HTTP ``Range`` request;
  a server that ignores ranges (200 instead of 206) makes it start over. Dropped connections are
  retried (resuming) a few times before giving up.
- The finished ``.part`` is checked against the size the server announced, then against the expected
  sha256 when one is known: given by the caller (the weights registry), embedded in the URL
  (torch hub's ``name-<sha256 prefix>.pth`` and OpenAI CLIP's ``.../<sha256>/file.pt``), or announced
  by the Hugging Face hub (``X-Linked-Etag`` on its redirect to the CDN). A mismatch deletes the
  ``.part`` and raises :class:`DigestMismatchError`: the target is never installed.
- Installation is ``fsync`` + ``os.replace``, so the target is either absent or complete.
- A lock file (``<file>.lock``, ``flock``) keeps two processes (two replicas starting together, a
  service and ``ambience models fetch``) from writing the same ``.part``.
- Progress is a tqdm bar on stderr (``progress=False`` turns it off).

No FastAPI here: this module is used by the CLI and by the services' start-up alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 16
USER_AGENT = "ambience-models-fetch"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: torch hub convention: ``name-<first 8+ hex digits of sha256>.ext`` (torch.hub.HASH_REGEX).
_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.[A-Za-z0-9]+$")


class DownloadError(RuntimeError):
    """The file could not be downloaded (after retries). Any ``.part`` is kept for resuming."""


class HostUnreachableError(DownloadError):
    """The server's name does not resolve (no internet, no DNS): retrying will not help."""


class DigestMismatchError(DownloadError):
    """The downloaded bytes are not the expected ones; nothing was installed."""


@dataclass(frozen=True)
class Downloaded:
    """What :func:`download` did."""

    path: Path
    url: str
    size: int
    sha256: str
    #: Bytes transferred by this call (less than ``size`` when it resumed a ``.part``).
    transferred: int
    #: Bytes that were already in the ``.part`` when this call started.
    resumed_from: int


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def digest_from_url(url: str) -> str:
    """The sha256 (or its prefix) a URL promises by convention, '' when it promises none.

    OpenAI's CLIP URLs carry the full digest as the folder name; torch hub files end in
    ``-<prefix>.pth`` where the prefix is the start of the file's sha256.
    """
    path = urllib.request.urlparse(url).path
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and _SHA256.match(parts[-2]):
        return parts[-2]
    m = _HUB_HASH.search(parts[-1]) if parts else None
    return m.group(1) if m else ""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def matches(digest: str, expected: str) -> bool:
    """Full digests must be equal; a prefix (torch hub file names) must be a prefix."""
    expected = expected.lower()
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


class _HubHeaders(urllib.request.HTTPRedirectHandler):
    """Keeps the Hugging Face hub's ``X-Linked-Etag``/``X-Linked-Size`` from redirect responses:
    for LFS files they hold the sha256 and size of the file behind the CDN URL."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        for name in ("X-Linked-Etag", "X-Linked-Size"):
            value = headers.get(name)
            if value:
                self.seen[name] = value.strip().strip('"').removeprefix("W/").strip('"')
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    lock = target.with_name(target.name + ".lock")
    with open(lock, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _total_from_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/200`` -> (100, 200); ``bytes */200`` -> (None, 200)."""
    m = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def download(
    url: str,
    target: Path,
    *,
    sha256: str = "",
    size: int | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    progress: bool = True,
    description: str = "",
    stream: IO[str] | None = None,
) -> Downloaded:
    """Download ``url`` to ``target`` (see the module docstring). Returns what was done.

    Raises :class:`DigestMismatchError` when the bytes do not match ``sha256``/``size`` or the digest
    the URL or server announces, :class:`DownloadError` when the file cannot be had.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        return _download_locked(
            url, target, sha256, size, timeout, retries, progress, description or target.name, stream
        )


def unresolvable(exc: BaseException) -> bool:
    """Whether ``exc`` says a host name could not be resolved (as opposed to a dropped link)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, socket.gaierror)


def _download_locked(
    url: str,
    target: Path,
    sha256: str,
    size: int | None,
    timeout: float,
    retries: int,
    progress: bool,
    description: str,
    stream: IO[str] | None,
) -> Downloaded:
    part = part_path(target)
    resumed_from = part.stat().st_size if part.exists() else 0
    transferred = 0
    hub = _HubHeaders()
    opener = urllib.request.build_opener(hub)
    bar: tqdm[Any] | None = None
    total: int | None = size
    attempt = 0
    try:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                    if offset and resp.status == 200:
                        log.info("%s: the server ignores ranges; downloading from the start", url)
                        offset = 0
                    elif offset:
                        start, full = _total_from_content_range(resp.headers.get("Content-Range"))
                        if start != offset:
                            raise DownloadError(f"{url}: asked for bytes from {offset}, got {start}")
                        total = full if full is not None else total
                    if not offset:
                        length = resp.headers.get("Content-Length")
                        total = int(length) if length else total
                        resumed_from = 0
                    if bar is None and progress:
                        bar = tqdm(
                            total=total,
                            initial=offset,
                            unit="B",
                            unit_scale=True,
                            unit_divisor=1024,
                            desc=description,
                            file=stream or sys.stderr,
                            mininterval=0.5,
                            leave=True,
                        )
                    elif bar is not None:
                        bar.reset(total=total)
                        bar.update(offset)
                    with open(part, "ab" if offset else "wb") as out:
                        for chunk in iter(lambda r=resp: r.read(CHUNK), b""):
                            out.write(chunk)
                            transferred += len(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                        out.flush()
                        os.fsync(out.fileno())
                    got = part.stat().st_size
                    if total is not None and got < total:
                        raise http.client.IncompleteRead(b"", total - got)
                    break
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and offset:
                    # Range not satisfiable: the .part already holds the whole file (or is junk).
                    _, full = _total_from_content_range(exc.headers.get("Content-Range"))
                    if full is not None and full == offset:
                        total = full
                        break
                    part.unlink(missing_ok=True)
                    continue
                if exc.code < 500 and exc.code != 429:
                    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
                attempt += 1  # the server is busy or failing: worth another try
                if attempt > retries:
                    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason} ({attempt} attempts)") from exc
                time.sleep(min(2.0 * attempt, 10.0))
            except (OSError, http.client.HTTPException) as exc:  # dropped connection, timeout, reset
                if unresolvable(exc):
                    raise HostUnreachableError(
                        f"{urllib.parse.urlsplit(url).hostname}: the host name does not resolve "
                        "(no internet access?)"
                    ) from exc
                attempt += 1
                kept = part.stat().st_size if part.exists() else 0
                if attempt > retries:
                    resume = f"; {kept} bytes kept in {part}, run the command again to resume" if kept else ""
                    raise DownloadError(
                        f"{url}: download interrupted ({exc!r}) after {attempt} attempts{resume}"
                    ) from exc
                log.warning("%s: interrupted (%r) at %d bytes; resuming", url, exc, kept)
                time.sleep(min(2.0 * attempt, 10.0) if attempt > 1 else 0.2)
    finally:
        if bar is not None:
            bar.close()

    got = part.stat().st_size
    expected_size = size if size is not None else total
    if expected_size is not None and got != expected_size:
        part.unlink(missing_ok=True)
        raise DigestMismatchError(f"{url}: got {got} bytes, expected {expected_size}; not installed")
    if hub.seen.get("X-Linked-Size", "").isdigit() and got != int(hub.seen["X-Linked-Size"]):
        part.unlink(missing_ok=True)
        raise DigestMismatchError(
            f"{url}: got {got} bytes, the hub says {hub.seen['X-Linked-Size']}; not installed"
        )
    digest = sha256_of(part)
    checks = [(sha256, "the expected sha256"), (digest_from_url(url), "the sha256 named in the URL")]
    linked = hub.seen.get("X-Linked-Etag", "").lower()
    if _SHA256.match(linked):
        checks.append((linked, "the sha256 the hub announces"))
    for expected, what in checks:
        if expected and not matches(digest, expected):
            part.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"{url}: sha256 {digest} does not match {what} {expected.lower()}; the file was not installed"
            )
    os.replace(part, target)
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return Downloaded(target, url, got, digest, transferred, resumed_from)
