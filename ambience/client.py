"""What `ambience index` and `ambience search` share: the gateway's URL and key, and the mapping file
(CSV ``image_id,path``) that names the ids of a folder's files.

Mappings live in the data dir, one per indexed folder (``$AMBIENCE_DATA_DIR/index/NAME-HASH.csv``),
never in the photo folder: read-only shares work and the library is left untouched. New ids continue
after the largest id of every mapping there, so two folders never share an id."""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

#: Seconds between the progress lines of a background job (the gateway's Retry-After paces the asks).
PRINT_EVERY_S = 10.0
LEGACY_MAPPING_NAME = ".ambience_ids.csv"  # where mappings used to be written, inside the folder
_FOLDER_ROW = "folder"  # first row of a mapping: ("folder", absolute path of the indexed folder)
DEFAULT_URL = "http://127.0.0.1:44444"


def add_gateway_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway", help="gateway URL (default $AMBIENCE_GATEWAY_URL or http://127.0.0.1:44444)"
    )


def gateway_url(given: str | None) -> str:
    return (given or os.environ.get("AMBIENCE_GATEWAY_URL") or DEFAULT_URL).rstrip("/")


def auth_headers() -> dict[str, str]:
    key = os.environ.get("AMBIENCE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def reporting_errors(command: str, run: Callable[[], int]) -> int:
    """Run a client command; an unreachable gateway or a refused request is one line and exit 1."""
    try:
        return run()
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"ambience {command}: {exc}", file=sys.stderr)
        return 1


def wait_for_job(
    ask: Callable[[], httpx.Response], describe: Callable[[dict[str, Any]], str]
) -> dict[str, Any]:
    """Ask for a background job of the gateway (a rebuild, a backfill) until it answers 200, printing
    ``describe(progress)`` every :data:`PRINT_EVERY_S` while it answers 202; returns the final JSON.
    Any other status is a RuntimeError naming it."""
    last_print = time.monotonic()
    while True:
        reply = ask()
        if reply.status_code == 200:
            return reply.json()
        if reply.status_code != 202:
            raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:300]}")
        if time.monotonic() - last_print >= PRINT_EVERY_S:
            last_print = time.monotonic()
            print(f"  {describe(reply.json().get('progress') or {})}", file=sys.stderr, flush=True)
        time.sleep(float(reply.headers.get("Retry-After", "2")))


def mappings_dir() -> Path:
    from services.common.settings import CommonSettings

    return (CommonSettings().data_dir / "index").resolve()


def default_mapping_path(folder: Path) -> Path:
    """The data dir's mapping for ``folder``: readable name plus a hash of its absolute path."""
    folder = folder.resolve()
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return mappings_dir() / f"{folder.name or 'root'}-{digest}.csv"


class IdMapping:
    """file (relative to the folder) <-> image id, appended to a CSV as ids are handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: dict[str, int] = {}
        self.folder: Path | None = None
        if path.exists():
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if len(row) == 2 and row[0] == _FOLDER_ROW:
                        self.folder = Path(row[1])
                    elif len(row) == 2 and row[0].isdigit():  # a row cut by a crash is ignored
                        self.ids[row[1]] = int(row[0])

    def names(self) -> dict[int, str]:
        return {i: name for name, i in self.ids.items()}

    def assign(self, names: list[str], start: int, taken_up_to: int = -1) -> None:
        """Give new names the next ids after ``start - 1``, this mapping's ids and ``taken_up_to``."""
        new = [n for n in names if n not in self.ids]
        next_id = max([start - 1, taken_up_to, *self.ids.values()]) + 1
        self.record({name: next_id + n for n, name in enumerate(new)})

    def record(self, ids: dict[str, int]) -> None:
        """Append name -> id rows durably (before any of those ids is uploaded)."""
        if not ids:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            if f.tell() and not self.path.read_bytes().endswith(b"\n"):
                f.write("\n")
            writer = csv.writer(f)
            if not f.tell() and self.folder is not None:
                writer.writerow([_FOLDER_ROW, str(self.folder)])
            for name, image_id in ids.items():
                self.ids[name] = image_id
                writer.writerow([image_id, name])
            f.flush()
            os.fsync(f.fileno())


def folder_mapping(folder: Path, given: Path | None) -> IdMapping:
    """The mapping of ``folder``: ``given``, else the data dir's one (seeded once from a mapping an
    older version wrote into the folder, so ids stay as they were)."""
    if given is not None:
        return IdMapping(given)
    mapping = IdMapping(default_mapping_path(folder))
    mapping.folder = folder.resolve()
    legacy = folder / LEGACY_MAPPING_NAME
    if not mapping.ids and legacy.is_file():
        mapping.record(IdMapping(legacy).ids)
    return mapping


def data_dir_mappings() -> list[IdMapping]:
    folder = mappings_dir()
    return [IdMapping(p) for p in sorted(folder.glob("*.csv"))] if folder.is_dir() else []


def largest_id_in_data_dir(except_path: Path) -> int:
    return max(
        (max(m.ids.values(), default=-1) for m in data_dir_mappings() if m.path != except_path.resolve()),
        default=-1,
    )


def file_names(mapping: Path | None) -> dict[int, str]:
    """id -> file name for search results: from ``mapping`` (names relative to its folder), else
    from every mapping in the data dir (absolute paths)."""
    if mapping is not None:
        return IdMapping(mapping).names()
    names: dict[int, str] = {}
    for m in data_dir_mappings():
        base = m.folder
        names.update({i: str(base / n) if base else n for i, n in m.names().items()})
    return names
