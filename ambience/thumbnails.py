"""``ambience thumbnails backfill [FOLDER]``: previews for images added before the gateway kept them.

The gateway makes those whose upload is still spooled (``POST /thumbnails/backfill``); with a folder
that ``ambience index`` added, the others are made from its files (``POST /thumbnails/{id}``), found
through the folder's id mapping. Whatever is still missing is listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from ambience.client import add_gateway_option, auth_headers, folder_mapping, gateway_url, reporting_errors


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("thumbnails", help="make the page's previews of images added before they were kept")
    actions = p.add_subparsers(dest="action", required=True)
    backfill = actions.add_parser("backfill", help="make every missing preview the gateway can")
    backfill.add_argument(
        "folder",
        type=Path,
        nargs="?",
        help="a folder `ambience index` added: missing previews come from its files",
    )
    backfill.add_argument("--mapping", type=Path, help="the folder's id mapping (default: the data dir's)")
    add_gateway_option(backfill)


def run(args: argparse.Namespace) -> int:
    return reporting_errors("thumbnails", lambda: backfill(args.gateway, args.folder, args.mapping))


def backfill(url: str | None, folder: Path | None, mapping_path: Path | None) -> int:
    base = gateway_url(url)
    with httpx.Client(timeout=120, headers=auth_headers()) as client:
        reply = client.post(base + "/thumbnails/backfill")
        reply.raise_for_status()
        made, missing = int(reply.json()["made"]), list(reply.json()["missing"])
        from_files = 0
        if folder is not None and missing:
            names = folder_mapping(folder, mapping_path).names()
            still = []
            for image_id in missing:
                path = folder / names[image_id] if image_id in names else None
                if path is None or not path.is_file():
                    still.append(image_id)
                    continue
                r = client.post(
                    f"{base}/thumbnails/{image_id}", files={"image": (path.name, path.read_bytes())}
                )
                if r.status_code == 200:
                    from_files += 1
                else:
                    print(f"  {path}: {r.status_code} {r.text[:200]}", file=sys.stderr)
                    still.append(image_id)
            missing = still
    print(f"made from spooled uploads: {made}, from files: {from_files}, still missing: {len(missing)}")
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        print(f"  without a preview: {shown} (give the folder they were indexed from)", file=sys.stderr)
    return 0
