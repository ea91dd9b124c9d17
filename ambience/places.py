"""``ambience places backfill``: library rows and places for images added before the gateway kept
them.

The backfill runs in the gateway (``POST /places/backfill``, in the background); this command
starts it, prints its progress every 10 s, and its result once it is done.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from ambience.client import add_gateway_option, auth_headers, gateway_url, reporting_errors, wait_for_job


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("places", help="where photos were taken: fill in the library's places")
    actions = p.add_subparsers(dest="action", required=True)
    backfill = actions.add_parser(
        "backfill", help="library rows and places for images added before they were kept, with progress"
    )
    add_gateway_option(backfill)


def run(args: argparse.Namespace) -> int:
    return reporting_errors("places", lambda: backfill(args.gateway))


def backfill(url: str | None) -> int:
    base = gateway_url(url)
    with httpx.Client(timeout=60, headers=auth_headers()) as client:
        started = client.post(base + "/places/backfill")
        if started.status_code != 202:
            raise RuntimeError(f"HTTP {started.status_code}: {started.text[:300]}")
        result = wait_for_job(
            lambda: client.get(base + "/places/backfill"),
            lambda p: f"{p.get('phase', 'running')}: {p.get('done', 0)}/{p.get('total', 0)}",
        )
    last = result.get("last") or {}
    if "error" in last:
        print(f"places: the backfill failed: {last['error']}", file=sys.stderr)
        return 1
    print(f"places: {last.get('rows_added', 0)} library rows added, {last.get('placed', 0)} positions placed")
    return 0
