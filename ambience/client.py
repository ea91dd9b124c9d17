"""What `ambience index` and `ambience search` share: the gateway's URL and key, and the mapping file
(CSV ``image_id,path``) that names the ids of a folder's files."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

MAPPING_NAME = ".ambience_ids.csv"
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


class IdMapping:
    """file (relative to the folder) <-> image id, appended to a CSV as ids are handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: dict[str, int] = {}
        if path.exists():
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if len(row) == 2 and row[0].isdigit():  # a row cut by a crash is ignored
                        self.ids[row[1]] = int(row[0])

    def names(self) -> dict[int, str]:
        return {i: name for name, i in self.ids.items()}

    def assign(self, names: list[str], start: int) -> None:
        new = [n for n in names if n not in self.ids]
        if not new:
            return
        next_id = max([start - 1, *self.ids.values()]) + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            if f.tell() and not self.path.read_bytes().endswith(b"\n"):
                f.write("\n")
            writer = csv.writer(f)
            for name in new:
                self.ids[name] = next_id
                writer.writerow([next_id, name])
                next_id += 1
            f.flush()
            os.fsync(f.fileno())
