"""``ambience groups rebuild [--kind copies|similar|bursts]``: relink the duplicate groups after a bulk
import.

``ambience import`` writes the services' stores past the gateway, so no image it wrote has links.
The rebuild runs in the gateway (in the background for copies with local features: a search per
image); this command asks until it answers, printing its progress, then the result.
"""

from __future__ import annotations

import argparse

import httpx

from ambience.client import add_gateway_option, auth_headers, gateway_url, reporting_errors, wait_for_job


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
    with httpx.Client(timeout=300, headers=auth_headers()) as client:
        result = wait_for_job(
            lambda: client.post(base + "/duplicate_groups/rebuild", json={"kind": kind}),
            lambda p: (
                f"{p.get('phase', 'running')}: {p.get('done', 0)}/{p.get('total', 0)}"
                f" ({p.get('failed', 0)} failed)"
            ),
        )
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
