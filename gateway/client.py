"""`ambience index` and `ambience search`: the gateway's HTTP API from the command line.

``index DIR`` gives every image file under DIR an id, recorded in a mapping file (CSV
``image_id,path`` relative to DIR; default ``DIR/.ambience_ids.csv``) before it is uploaded, so a run
that is interrupted resumes with the same ids: files the catalog knows as complete (or pending: the
gateway's retry worker finishes those) are skipped.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAPPING_NAME = ".ambience_ids.csv"
DEFAULT_URL = "http://127.0.0.1:44444"


def gateway_url(given: str | None) -> str:
    return (given or os.environ.get("AMBIENCE_GATEWAY_URL") or DEFAULT_URL).rstrip("/")


def auth_headers() -> dict[str, str]:
    key = os.environ.get("AMBIENCE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


class IdMapping:
    """file (relative to the folder) <-> image id, appended to a CSV as ids are handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: dict[str, int] = {}
        if path.exists():
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if len(row) == 2 and row[0].isdigit():  # a row cut by a crash is ignored
                        self.ids[row[1]] = int(row[0])

    def names(self) -> dict[int, str]:
        return {i: name for name, i in self.ids.items()}

    def assign(self, names: list[str], start: int) -> None:
        new = [n for n in names if n not in self.ids]
        if not new:
            return
        next_id = max([start - 1, *self.ids.values()]) + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            if f.tell() and not self.path.read_bytes().endswith(b"\n"):
                f.write("\n")
            writer = csv.writer(f)
            for name in new:
                self.ids[name] = next_id
                writer.writerow([next_id, name])
                next_id += 1
            f.flush()
            os.fsync(f.fileno())


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
    ids = IdMapping(mapping or folder / MAPPING_NAME)
    names = [str(p.relative_to(folder)) for p in files]
    ids.assign(names, start_id)
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


# -- search --------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(out)


RESULT_KEYS = ("phash_res", "color_res", "local_features_res", "global_features_res", "image_text_res")


def search_image(
    image: Path, url: str | None = None, mapping: Path | None = None, duplicate: bool = False
) -> str:
    url = gateway_url(url)
    reply = httpx.post(
        url + "/reverse_search",
        files={"image": ("document", image.read_bytes())},
        data={"find_duplicate": "1" if duplicate else "0"},
        headers=auth_headers(),
        timeout=120,
    )
    reply.raise_for_status()
    body = reply.json()
    names = IdMapping(mapping).names() if mapping else {}
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
    if body.get("failed"):
        out += "\n\nleft out: " + "; ".join(f"{k} ({v})" for k, v in body["failed"].items())
    return out


def search_text(
    text: str, k: int = 20, url: str | None = None, mapping: Path | None = None, ocr: bool = False
) -> str:
    url = gateway_url(url)
    route = "/ocr_search_by_text" if ocr else "/image_text_features_get_similar_images_by_text"
    reply = httpx.post(url + route, json={"text": text, "k": k}, headers=auth_headers(), timeout=120)
    if reply.status_code != 200:
        raise RuntimeError(f"{route}: HTTP {reply.status_code}: {reply.text[:300]}")
    names = IdMapping(mapping).names() if mapping else {}
    rows = []
    for n, hit in enumerate(reply.json(), 1):
        measure = hit.get("score", hit.get("distance", ""))
        rows.append([n, hit["image_id"], measure, names.get(hit["image_id"], "")])
    return (
        table(["rank", "image_id", "score" if ocr else "distance", "file"], rows) if rows else "nothing found"
    )
