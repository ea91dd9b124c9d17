"""``ambience thumbnails backfill [FOLDER]``: previews for images added before the gateway kept them.

The gateway makes those whose upload is still spooled (``POST /thumbnails/backfill``); with a folder
that ``ambience index`` added, the others are made from its files (``POST /thumbnails/{id}``), found
through the folder's id mapping. Whatever is still missing is listed. With ``--imported``, also the
images ``ambience import`` wrote from the folder (the catalog never saw them): every id of the
mapping, or of the file names, without a preview gets one.
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
    backfill.add_argument(
        "--mapping",
        type=Path,
        help="the folder's id mapping (default: the data dir's; for `ambience import` with sequential "
        "ids, the service's import_ids.csv)",
    )
    backfill.add_argument(
        "--imported",
        action="store_true",
        help="also every image of the folder the catalog never saw (`ambience import`): each id of the "
        "mapping without a preview gets one from its file",
    )
    backfill.add_argument(
        "--ids-from-filenames",
        action="store_true",
        help="with --imported: ids are the file names (123.jpg -> 123), as `ambience import` gave them",
    )
    add_gateway_option(backfill)


def run(args: argparse.Namespace) -> int:
    if (args.imported or args.ids_from_filenames) and args.folder is None:
        print("thumbnails: --imported and --ids-from-filenames need the FOLDER", file=sys.stderr)
        return 2

    def work() -> int:
        code = backfill(args.gateway, args.folder, args.mapping)
        if args.imported:
            names = names_from_files(args.folder) if args.ids_from_filenames else None
            code = code or backfill_imported(args.gateway, args.folder, args.mapping, names)
        return code

    return reporting_errors("thumbnails", work)


def names_from_files(folder: Path) -> dict[int, str]:
    """id -> file for files named by their id (``123.jpg``), as ``ambience import
    --ids-from-filenames`` numbers them."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.stem.isdigit())
    return {int(p.stem): str(p.relative_to(folder)) for p in files}


def backfill_imported(
    url: str | None, folder: Path, mapping_path: Path | None, names: dict[int, str] | None
) -> int:
    """A preview for every image of ``folder`` (by ``names``, else its id mapping) that has none:
    imported images the catalog never saw, which ``POST /thumbnails/backfill`` cannot list."""
    base = gateway_url(url)
    if names is None:
        names = folder_mapping(folder, mapping_path).names()
    made, failed = 0, 0
    with httpx.Client(timeout=120, headers=auth_headers()) as client:
        for n, (image_id, name) in enumerate(sorted(names.items()), start=1):
            if client.get(f"{base}/thumbnails/{image_id}").status_code == 404:
                path = folder / name
                reply = None
                if path.is_file():
                    picture = {"image": (path.name, path.read_bytes())}
                    reply = client.post(f"{base}/thumbnails/{image_id}", files=picture)
                if reply is not None and reply.status_code == 200:
                    made += 1
                else:
                    failed += 1
                    why = f"{reply.status_code} {reply.text[:200]}" if reply is not None else "no such file"
                    print(f"  {path}: {why}", file=sys.stderr)
            if n % 1000 == 0:
                print(f"  {n}/{len(names)} checked, {made} made", file=sys.stderr, flush=True)
    print(f"imported images: {len(names)} checked, previews made: {made}, failed: {failed}")
    return 0


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
