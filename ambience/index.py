"""`ambience index DIR`: add every image under DIR through the gateway, resumably.

Every image file under DIR gets an id, recorded in a mapping file (CSV ``image_id,path`` relative to
DIR; by default in the data dir, see ``ambience.client``) before it is uploaded, so a run that is
interrupted resumes with the same ids: files the catalog knows as complete (or pending: the
gateway's retry worker finishes those) are skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from ambience.client import (
    add_gateway_option,
    auth_headers,
    folder_mapping,
    gateway_url,
    largest_id_in_data_dir,
    reporting_errors,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p_index = sub.add_parser("index", help="add every image under a folder through the gateway (resumable)")
    p_index.add_argument("folder", type=Path)
    add_gateway_option(p_index)
    p_index.add_argument(
        "--mapping", type=Path, help="file name -> id CSV (default: per folder, in $AMBIENCE_DATA_DIR/index)"
    )
    p_index.add_argument("--concurrency", type=int, default=4, help="uploads in flight (default 4)")
    p_index.add_argument("--start-id", type=int, default=0, help="first id handed out (default 0)")


def run(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"ambience index: {args.folder} is not a folder", file=sys.stderr)
        return 2

    def index() -> int:
        summary = index_folder(
            args.folder, args.gateway, args.mapping, max(args.concurrency, 1), args.start_id
        )
        for problem in summary.pop("problems"):
            print(f"  {problem}", file=sys.stderr)
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
        return 1 if summary.get("failed") else 0

    return reporting_errors("index", index)


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def catalog_states(client: httpx.Client, url: str, ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), 5000):
        reply = client.post(url + "/catalog_status", json={"image_ids": ids[start : start + 5000]})
        reply.raise_for_status()
        out.update({int(k): v["state"] for k, v in reply.json().items()})
    return out


def index_folder(
    folder: Path,
    url: str | None = None,
    mapping: Path | None = None,
    concurrency: int = 4,
    start_id: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Add every image under ``folder`` through the gateway; returns counts and problems."""
    url = gateway_url(url)
    folder = folder.resolve()
    files = image_files(folder)
    ids = folder_mapping(folder, mapping)
    names = [str(p.relative_to(folder)) for p in files]
    ids.assign(names, start_id, largest_id_in_data_dir(except_path=ids.path))
    counts: Counter[str] = Counter()
    problems: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=300, headers=auth_headers(), limits=limits) as client:
        states = catalog_states(client, url, [ids.ids[n] for n in names])
        todo = []
        for name in names:
            state = states.get(ids.ids[name])
            if state in ("complete", "pending"):
                counts["skipped"] += 1
            else:
                todo.append(name)

        def add(name: str) -> tuple[str, str]:
            image_id = ids.ids[name]
            try:
                data = (folder / name).read_bytes()
                reply = client.post(
                    url + "/calculate_all_image_features",
                    files={"image": ("document", data)},
                    data={"image_id": str(image_id)},
                )
            except (OSError, httpx.HTTPError) as exc:
                return "failed", f"{name}: {type(exc).__name__}: {exc}"
            if reply.status_code == 200:
                parts = reply.json()
                if all(p["status"] == "ok" for p in parts):
                    return "added", ""
                waiting = ", ".join(f"{p['service']} {p['status']}" for p in parts if p["status"] != "ok")
                return "added, retrying some", f"{name}: {waiting}"
            if reply.status_code == 409:
                return "skipped", ""
            detail = reply.text[:300]
            return (
                "rejected" if reply.status_code < 500 else "failed"
            ), f"{name}: HTTP {reply.status_code} {detail}"

        with ThreadPoolExecutor(concurrency) as pool:
            bar = tqdm(total=len(todo), unit="img", desc="indexing", disable=not progress, file=sys.stderr)
            for outcome, problem in pool.map(add, todo):
                counts[outcome] += 1
                if problem:
                    problems.append(problem)
                bar.update()
                bar.set_postfix({k: v for k, v in counts.items() if k != "added"}, refresh=False)
            bar.close()
    return {"files": len(files), "mapping": str(ids.path), **counts, "problems": problems}
