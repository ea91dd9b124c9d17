"""`ambience search`: reverse search an image (or search by text) and print the ranking as a table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from ambience.client import add_gateway_option, auth_headers, file_names, gateway_url, reporting_errors
from services.registry import SERVICES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p_search = sub.add_parser("search", help="reverse search an image, or search by text")
    p_search.add_argument("image", type=Path, nargs="?", help="query image")
    p_search.add_argument("--text", help="search by text (image_text service) instead of an image")
    p_search.add_argument("--ocr", action="store_true", help="with --text: search the text in images (OCR)")
    p_search.add_argument("--duplicate", action="store_true", help="duplicate mode of /reverse_search")
    p_search.add_argument("-k", type=int, default=20, help="results of a text search (default 20)")
    add_gateway_option(p_search)
    p_search.add_argument(
        "--mapping",
        type=Path,
        help="CSV written by `ambience index` to show file names (default: every one in the data dir)",
    )


def run(args: argparse.Namespace) -> int:
    if not args.text and not args.image:
        print("ambience search: give an IMAGE or --text", file=sys.stderr)
        return 2

    def search() -> int:
        if args.text:
            print(search_text(args.text, args.k, args.gateway, args.mapping, ocr=args.ocr))
        else:
            print(search_image(args.image, args.gateway, args.mapping, duplicate=args.duplicate))
        return 0

    return reporting_errors("search", search)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(out)


RESULT_KEYS = tuple(info.result_key for info in SERVICES.values() if info.result_key)


def search_image(
    image: Path, url: str | None = None, mapping: Path | None = None, duplicate: bool = False
) -> str:
    url = gateway_url(url)
    reply = httpx.post(
        url + "/reverse_search",
        files={"image": (image.name, image.read_bytes())},
        data={"find_duplicate": "1" if duplicate else "0"},
        headers=auth_headers(),
        timeout=120,
    )
    reply.raise_for_status()
    body = reply.json()
    names = file_names(mapping)
    if duplicate:
        dups = body.get("duplicate", [])
        if not dups:
            return "no duplicate"
        rows = [
            [i + 1, d["image_id"], d.get("distance"), names.get(d["image_id"], "")]
            for i, d in enumerate(dups)
        ]
        return table(["rank", "image_id", "distance", "file"], rows)
    ranks = {key: {h["image_id"]: n for n, h in enumerate(body.get(key, []), 1)} for key in RESULT_KEYS}
    shown = [k for k in RESULT_KEYS if ranks[k]]
    rows = [
        [
            n,
            e["image_id"],
            f"{e['score']:.4f}",
            *(ranks[k].get(e["image_id"], "") for k in shown),
            names.get(e["image_id"], ""),
        ]
        for n, e in enumerate(body["unified_res"], 1)
    ]
    out = table(["rank", "image_id", "score", *(k.removesuffix("_res") for k in shown), "file"], rows)
    if reply.headers.get("X-Ambience-Failed"):
        out += "\n\nleft out: " + reply.headers["X-Ambience-Failed"]
    return out


def search_text(
    text: str, k: int = 20, url: str | None = None, mapping: Path | None = None, ocr: bool = False
) -> str:
    url = gateway_url(url)
    route = "/ocr_search_by_text" if ocr else "/image_text_features_get_similar_images_by_text"
    reply = httpx.post(url + route, json={"text": text, "k": k}, headers=auth_headers(), timeout=120)
    if reply.status_code != 200:
        raise RuntimeError(f"{route}: HTTP {reply.status_code}: {reply.text[:300]}")
    names = file_names(mapping)
    rows = []
    for n, hit in enumerate(reply.json(), 1):
        measure = hit.get("score", hit.get("distance", ""))
        rows.append([n, hit["image_id"], measure, names.get(hit["image_id"], "")])
    return (
        table(["rank", "image_id", "score" if ocr else "distance", "file"], rows) if rows else "nothing found"
    )
