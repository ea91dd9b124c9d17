"""`ambience index DIR`: add every photo and video under DIR through the gateway, resumably.

Every file the decode path takes (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF, camera RAW, videos:
services/common/media/formats.py) gets an id, recorded in a mapping file (CSV ``image_id,path`` relative to
DIR; by default in the data dir, see ``ambience.client``) before it is uploaded, so a run that is
interrupted resumes with the same ids: files the catalog knows as complete (or pending: the
gateway's retry worker finishes those) are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from ambience.client import (
    add_gateway_option,
    auth_headers,
    folder_mapping,
    gateway_url,
    largest_id_in_data_dir,
    reporting_errors,
)
from services.common.media.formats import MEDIA_SUFFIXES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p_index = sub.add_parser("index", help="add every image under a folder through the gateway (resumable)")
    p_index.add_argument("folder", type=Path)
    add_gateway_option(p_index)
    p_index.add_argument(
        "--mapping", type=Path, help="file name -> id CSV (default: per folder, in $AMBIENCE_DATA_DIR/index)"
    )
    p_index.add_argument("--concurrency", type=int, default=4, help="uploads in flight (default 4)")
    p_index.add_argument("--start-id", type=int, default=0, help="first id handed out (default 0)")
    p_index.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="end once every file is acknowledged, without waiting for the gateway's background steps "
        "(facts, thumbnails, duplicate links) to finish",
    )


def run(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"ambience index: {args.folder} is not a folder", file=sys.stderr)
        return 2

    def index() -> int:
        summary = index_folder(
            args.folder, args.gateway, args.mapping, max(args.concurrency, 1), args.start_id, wait=args.wait
        )
        for problem in summary.pop("problems"):
            print(f"  {problem}", file=sys.stderr)
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
        return 1 if summary.get("failed") else 0

    return reporting_errors("index", index)


def image_files(folder: Path) -> list[Path]:
    """Every photo and video under ``folder`` (hidden files skipped), in a stable order."""
    return media_files(folder)[0]


def media_files(folder: Path) -> tuple[list[Path], Counter[str]]:
    """The photos and videos under ``folder``, and the other (not hidden) files, which are skipped,
    counted by suffix."""
    found: list[Path] = []
    skipped: Counter[str] = Counter()
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in MEDIA_SUFFIXES:
            found.append(path)
        else:
            skipped[suffix or "(no suffix)"] += 1
    return sorted(found), skipped


#: Waits before sending an add again after a transient refusal (the gateway busy or restarting, a
#: lost connection); then the file is reported as failed with the last reason.
TRANSIENT_WAITS_S = (1.0, 2.0, 4.0, 8.0, 16.0)


def catalog_states(client: httpx.Client, url: str, ids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 5000):
        reply = client.post(url + "/catalog_status", json={"image_ids": ids[start : start + 5000]})
        reply.raise_for_status()
        out.update({int(k): v for k, v in reply.json().items()})
    return out


def catalog_max_id(url: str) -> int:
    reply = httpx.get(url + "/catalog_stats", headers=auth_headers(), timeout=60)
    reply.raise_for_status()
    largest = reply.json().get("max_image_id")
    return -1 if largest is None else int(largest)


def already_there(entry: dict[str, Any] | None, path: Path) -> tuple[str, str] | None:
    """(counted as, reason or "") for a file the catalog already knows under its id; None when it
    must be sent. A file whose id holds another image is reported, never silently skipped."""
    if entry is None or entry["state"] == "deleting":
        return None  # unknown, or still being deleted: the gateway queues the add behind the delete
    digest = entry.get("digest")
    if digest:
        try:
            mine = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            return "failed", f"cannot read it: {exc}"
        if mine != digest:
            return "conflict", "the id holds another image in the catalog (added some other way)"
    if entry["state"] == "failed":
        gave_up = ", ".join(s for s, p in entry["parts"].items() if p["status"] == "failed")
        return "failed", f"{gave_up} gave up after retries: `ambience catalog retry`"
    return "skipped", ""


def add_file(
    client: httpx.Client, url: str, path: Path, image_id: int, name: str | None = None
) -> tuple[str, str]:
    """Send one file under ``name`` (default its own name; a folder index sends the path inside the
    folder, which the gateway keeps as the file name: its duplicate groups' reference folders match
    it); transient refusals are sent again after a wait. (outcome, reason or "")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "failed", f"cannot read it: {exc}"
    reason = ""
    for wait in (*TRANSIENT_WAITS_S, None):
        try:
            reply = client.post(
                url + "/calculate_all_image_features",
                files={"image": (name or path.name, data)},
                data={"image_id": str(image_id)},
            )
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if reply.status_code == 200:
                parts = reply.json()
                # "queued": a service the add does not wait for (the gateway sends it in the background)
                if all(p["status"] in ("ok", "queued") for p in parts):
                    return "added", ""
                waiting = ", ".join(
                    f"{p['service']} {p['status']}" for p in parts if p["status"] not in ("ok", "queued")
                )
                return "added, retrying some", waiting
            detail = error_detail(reply)
            if reply.status_code == 409 and "the same image" in detail:
                return "skipped", ""
            if reply.status_code == 409:
                return "conflict", f"HTTP 409 {detail}"
            if reply.status_code < 500:
                return "rejected", f"HTTP {reply.status_code} {detail}"
            reason = f"HTTP {reply.status_code} {detail}"
        if wait is not None:
            time.sleep(wait)
    return "failed", f"{reason} (after {len(TRANSIENT_WAITS_S)} retries)"


def error_detail(reply: httpx.Response) -> str:
    try:
        detail = reply.json().get("detail", reply.text)
    except ValueError:
        detail = reply.text
    return str(detail)[:300]


def index_folder(
    folder: Path,
    url: str | None = None,
    mapping: Path | None = None,
    concurrency: int = 4,
    start_id: int = 0,
    progress: bool = True,
    wait: bool = True,
    timings: list[float] | None = None,
) -> dict[str, Any]:
    """Add every image under ``folder`` through the gateway; returns counts and problems. With
    ``wait``, then wait until the gateway's backlog (the steps that follow adds, and parts being
    retried) is done, showing it. ``timings``: filled with each add's seconds, as they end."""
    url = gateway_url(url)
    folder = folder.resolve()
    files, skipped = media_files(folder)
    ids = folder_mapping(folder, mapping)
    names = [str(p.relative_to(folder)) for p in files]
    # New ids continue after every id in use: other folders' and those added some other way
    # (the README's curl examples), so a new file never lands on an id the catalog holds.
    taken = max(largest_id_in_data_dir(except_path=ids.path), catalog_max_id(url))
    ids.assign(names, start_id, taken)
    counts: Counter[str] = Counter()
    problems: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=300, headers=auth_headers(), limits=limits) as client:
        states = catalog_states(client, url, [ids.ids[n] for n in names])
        todo = []
        for name in names:
            entry = states.get(ids.ids[name])
            skip = already_there(entry, folder / name)
            if skip is None:
                todo.append(name)
                continue
            counts[skip[0]] += 1
            if skip[1]:
                problems.append(f"{name} (id {ids.ids[name]}): {skip[1]}")

        def add(name: str) -> tuple[str, str]:
            started = time.perf_counter()
            # posix separators whatever the system: the name is the same from every client
            outcome, reason = add_file(client, url, folder / name, ids.ids[name], Path(name).as_posix())
            if timings is not None:
                timings.append(time.perf_counter() - started)
            return outcome, f"{name} (id {ids.ids[name]}): {reason}" if reason else ""

        with ThreadPoolExecutor(concurrency) as pool:
            bar = tqdm(total=len(todo), unit="img", desc="indexing", disable=not progress, file=sys.stderr)
            for outcome, problem in pool.map(add, todo):
                counts[outcome] += 1
                if problem:
                    problems.append(problem)
                bar.update()
                bar.set_postfix({k: v for k, v in counts.items() if k != "added"}, refresh=False)
            bar.close()
        left = wait_for_backlog(client, url, progress) if wait else backlog(client, url)
    if left:
        counts["steps still to do"] = left
    if skipped:
        kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
        count = sum(skipped.values())
        problems.append(f"skipped {count} file(s) that are not photos or videos ambience reads: {kinds}")
    return {"files": len(files), "mapping": str(ids.path), **counts, "problems": problems}


#: Seconds between looks at the gateway's backlog while waiting for it.
BACKLOG_POLL_S = 0.5


def backlog(client: httpx.Client, url: str) -> int:
    """What the gateway has left to do for the images it acknowledged: steps that follow adds
    (facts, thumbnails, duplicate links, ...) and service parts being retried."""
    reply = client.get(url + "/catalog_stats")
    reply.raise_for_status()
    stats = reply.json()
    return sum(stats.get("pending_steps", {}).values()) + sum(stats.get("pending_parts", {}).values())


def wait_for_backlog(client: httpx.Client, url: str, progress: bool) -> int:
    """Wait, showing progress, until the backlog is empty or stops shrinking for a minute (a service
    down: the gateway's retries finish it once it is back); returns what is left."""
    left = backlog(client, url)
    bar = tqdm(total=left, unit="step", desc="finishing", disable=not progress or not left, file=sys.stderr)
    stalled_since = time.monotonic()
    while left:
        time.sleep(BACKLOG_POLL_S)
        now = backlog(client, url)
        if now < left:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > 60:
            break
        bar.total = max(bar.total or 0, bar.n + now)
        bar.update(max(0, left - now))
        left = now
    bar.close()
    return left
