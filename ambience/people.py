"""``ambience people rebuild``: the faces recorded by the gateway brought in line with the faces
service and every person no decision holds grouped again (after ``ambience import``). The rebuild
runs in the gateway, in the background; this command asks until it answers, printing its progress,
then the result."""

from __future__ import annotations

import argparse

import httpx

from ambience.client import add_gateway_option, auth_headers, gateway_url, reporting_errors, wait_for_job


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("people", help="the people in the photos: regroup them after a bulk import")
    actions = p.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser("rebuild", help="record the faces the gateway misses and regroup everyone")
    add_gateway_option(rebuild)


def run(args: argparse.Namespace) -> int:
    return reporting_errors("people", lambda: rebuild(args.gateway))


def rebuild(url: str | None) -> int:
    base = gateway_url(url)
    with httpx.Client(timeout=300, headers=auth_headers()) as client:
        result = wait_for_job(
            lambda: client.post(base + "/people/rebuild"),
            lambda p: f"{p.get('phase')}: {p.get('done', 0)}/{p.get('total') or '?'}",
        )
    print(
        f"{result['faces']} faces, {result['people']} people; {result['images_added']} images recorded, "
        f"{result['images_forgotten']} forgotten, {result['faces_moved']} faces moved"
    )
    return 0
