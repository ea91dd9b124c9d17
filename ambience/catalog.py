"""`ambience catalog status` and `ambience catalog retry [ID...]`: the gateway's record of what every
service holds, and a way to send parts that gave up after their retries again."""

from __future__ import annotations

import argparse
import json

import httpx

from ambience.client import add_gateway_option, auth_headers, gateway_url, reporting_errors


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p_catalog = sub.add_parser("catalog", help="what the gateway's catalog holds; retry parts that gave up")
    actions = p_catalog.add_subparsers(dest="action", required=True)
    p_status = actions.add_parser("status", help="images, pending and failed parts per service")
    add_gateway_option(p_status)
    p_retry = actions.add_parser("retry", help="send parts that gave up again (all, or those of IDs)")
    p_retry.add_argument("image_ids", type=int, nargs="*", metavar="ID")
    add_gateway_option(p_retry)


def run(args: argparse.Namespace) -> int:
    url = gateway_url(args.gateway)

    def status() -> int:
        reply = httpx.get(url + "/catalog_stats", headers=auth_headers(), timeout=60)
        reply.raise_for_status()
        stats = reply.json()
        print(
            f"images: {stats['images']}, deleting: {stats['deleting']}, spooled uploads: "
            f"{stats.get('spool_files', 0)}"
        )
        for kind in ("pending_parts", "failed_parts"):
            per_service = stats.get(kind) or {}
            shown = ", ".join(f"{s} {n}" for s, n in sorted(per_service.items())) or "none"
            print(f"{kind.replace('_', ' ')}: {shown}")
        if stats.get("failed_parts"):
            print("parts that gave up are sent again by `ambience catalog retry [ID...]`")
        return 1 if stats.get("failed_parts") else 0

    def retry() -> int:
        body = {"image_ids": args.image_ids} if args.image_ids else {}
        reply = httpx.post(url + "/catalog_retry", json=body, headers=auth_headers(), timeout=60)
        if reply.status_code != 200:
            raise RuntimeError(f"HTTP {reply.status_code}: {json.dumps(reply.json())[:300]}")
        print(f"requeued: {reply.json()['requeued']}")
        return 0

    return reporting_errors("catalog", status if args.action == "status" else retry)
