"""``ambience groups rebuild [--kind copies|similar|bursts]``: relink the duplicate groups after a bulk
import.

``ambience import`` writes the services' stores past the gateway, so no image it wrote has links.
The rebuild runs in the gateway (in the background for copies with local features: a search per
image); this command asks until it answers, printing its progress, then the result.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from ambience.client import add_gateway_option, auth_headers, gateway_url, reporting_errors

#: Seconds between progress lines (the gateway's Retry-After paces the asks).
PRINT_EVERY_S = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("groups", help="duplicate and burst groups: relink them after a bulk import")
    actions = p.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser("rebuild", help="recompute every link of a kind, showing progress")
    rebuild.add_argument(
        "--kind",
        choices=("copies", "similar", "bursts"),
        default="copies",
        help="which groups (default copies; bursts: stacks)",
    )
    add_gateway_option(rebuild)


def run(args: argparse.Namespace) -> int:
    return reporting_errors("groups", lambda: rebuild(args.gateway, args.kind))


def rebuild(url: str | None, kind: str) -> int:
    base = gateway_url(url)
    last_print = 0.0
    with httpx.Client(timeout=300, headers=auth_headers()) as client:
        while True:
            reply = client.post(base + "/duplicate_groups/rebuild", json={"kind": kind})
            if reply.status_code == 200:
                break
            if reply.status_code != 202:
                raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:300]}")
            progress = reply.json().get("progress", {})
            if time.monotonic() - last_print >= PRINT_EVERY_S:
                last_print = time.monotonic()
                done, total = progress.get("done", 0), progress.get("total", 0)
                phase, failed = progress.get("phase", "running"), progress.get("failed", 0)
                print(f"  {phase}: {done}/{total} ({failed} failed)", file=sys.stderr, flush=True)
            time.sleep(float(reply.headers.get("Retry-After", "2")))
    result = reply.json()
    line = f"{kind}: {result['links']} links from {result.get('source', 'the catalog')}"
    if "measured" in result:
        line += f"; sharpness measured for {result['measured']} images"
    crops = result.get("crops")
    if crops and crops["images"] == 0 and crops["error"]:
        line += f"; crops not searched: {crops['error']}"
    elif crops:
        line += f"; crops: {crops['searched']} of {crops['images']} images searched, {crops['links']} links"
        if not crops["complete"]:
            line += f", {crops['failed']} failed ({crops['error'] or 'see the gateway log'})"
    if "aligned" in result:
        line += f"; thumbnails aligned: {result['aligned']} links"
    print(line)
    return 0 if not crops or crops["complete"] else 1
