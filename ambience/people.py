"""``ambience people rebuild``: the faces recorded by the gateway brought in line with the faces
service and every person no decision holds grouped again (after ``ambience import``). The rebuild
runs in the gateway, in the background; this command asks until it answers, printing its progress,
then the result."""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from ambience.client import add_gateway_option, auth_headers, gateway_url, reporting_errors

#: Seconds between progress lines (the gateway's Retry-After paces the asks).
PRINT_EVERY_S = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("people", help="the people in the photos: regroup them after a bulk import")
    actions = p.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser("rebuild", help="record the faces the gateway misses and regroup everyone")
    add_gateway_option(rebuild)


def run(args: argparse.Namespace) -> int:
    return reporting_errors("people", lambda: rebuild(args.gateway))


def rebuild(url: str | None) -> int:
    base = gateway_url(url)
    last_print = 0.0
    with httpx.Client(timeout=300, headers=auth_headers()) as client:
        while True:
            reply = client.post(base + "/people/rebuild")
            if reply.status_code == 200:
                break
            if reply.status_code != 202:
                raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:300]}")
            progress = reply.json().get("progress", {})
            if time.monotonic() - last_print >= PRINT_EVERY_S:
                last_print = time.monotonic()
                done, total, phase = progress.get("done", 0), progress.get("total", 0), progress.get("phase")
                print(f"  {phase}: {done}/{total or '?'}", file=sys.stderr, flush=True)
            time.sleep(float(reply.headers.get("Retry-After", "2")))
    result = reply.json()
    print(
        f"{result['faces']} faces, {result['people']} people; {result['images_added']} images recorded, "
        f"{result['images_forgotten']} forgotten, {result['faces_moved']} faces moved"
    )
    return 0
