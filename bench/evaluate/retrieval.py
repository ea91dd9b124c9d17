"""Copy-detection recall of every search service and of the fused ranking, through the gateway.

The originals are added with ``/calculate_all_image_features``; every transformed copy is sent to
``/reverse_search`` (normal mode) and the rank of its source is read from each service's result
list and from ``unified_res``. References (imagehash, PDQ) are evaluated on the same queries in
this process. Each service's mean latency is read from the gateway's own per-service histogram
(``/metrics``), so it is the time the gateway waited for that service inside the fused search.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageOps

from ambience_support.transforms import COPY_DETECTION, Transform, encode_query
from bench.evaluate.references import HashIndex, available
from gateway.settings import UPSTREAMS

RESULT_KEYS = {u.name: u.result_key for u in UPSTREAMS.values() if u.result_key}
UNIFIED = "unified_res"

Hits = list[dict[str, Any]]


@dataclass
class Query:
    transform: str
    image_id: int
    #: each service's hits as the gateway returned them (with distances), for offline fusion
    lists: dict[str, Hits]


@dataclass
class Ranks:
    """Rank of the source (0-based; None = not found) per (method, transform)."""

    ranks: dict[tuple[str, str], list[int | None]] = field(default_factory=dict)
    #: mean seconds per query per method (services: time the gateway waited for them)
    seconds: dict[str, float] = field(default_factory=dict)
    queries: list[Query] = field(default_factory=list)
    #: source ids that count as right for each photo id (byte-identical files are the same picture)
    same: dict[int, set[int]] = field(default_factory=dict)
    index_seconds: float = 0.0
    photos: int = 0

    def add(self, method: str, transform: str, rank: int | None) -> None:
        self.ranks.setdefault((method, transform), []).append(rank)

    def recall(self, method: str, transform: str, at: int) -> float:
        values = self.ranks.get((method, transform), [])
        return float(np.mean([r is not None and r < at for r in values])) if values else float("nan")

    def mean_recall(self, method: str, at: int) -> float:
        return float(np.nanmean([self.recall(method, t, at) for t in self.transforms()]))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.ranks))

    def transforms(self) -> list[str]:
        return list(dict.fromkeys(t for _, t in self.ranks))


def load(path: Path, max_side: int = 1600) -> Image.Image:
    img = Image.open(path)
    img = ImageOps.exif_transpose(img) or img
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side))
    return img


def rank_of(ids: list[int], wanted: set[int]) -> int | None:
    for i, image_id in enumerate(ids):
        if image_id in wanted:
            return i
    return None


def same_pictures(photos: list[Path]) -> dict[int, set[int]]:
    digests: dict[bytes, set[int]] = {}
    for image_id, path in enumerate(photos):
        digests.setdefault(path.read_bytes(), set()).add(image_id)
    return {image_id: ids for ids in digests.values() for image_id in ids}


def index_originals(client: httpx.Client, gateway: str, photos: list[Path]) -> dict[str, int]:
    """Add every photo through the gateway; returns failures per service (should be none)."""
    failures: dict[str, int] = {}

    def add(item: tuple[int, Path]) -> list[dict[str, Any]]:
        image_id, path = item
        r = client.post(
            f"{gateway}/calculate_all_image_features",
            files={"image": (path.name, path.read_bytes())},
            data={"image_id": str(image_id)},
        )
        r.raise_for_status()
        body = r.json()
        return body if isinstance(body, list) else body.get("results", [])

    with ThreadPoolExecutor(4) as pool:
        for parts in pool.map(add, enumerate(photos)):
            for part in parts:
                if isinstance(part, dict) and part.get("status") not in (None, "ok"):
                    failures[str(part.get("service"))] = failures.get(str(part.get("service")), 0) + 1
    return failures


_METRIC = re.compile(r'^ambience_gateway_upstream_seconds_(sum|count)\{service="([^"]+)"\}\s+(\S+)$', re.M)


def upstream_seconds(client: httpx.Client, gateway: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) per service from the gateway's latency histogram."""
    text = client.get(f"{gateway}/metrics").text
    out: dict[str, list[float]] = {}
    for kind, service, value in _METRIC.findall(text):
        out.setdefault(service, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return {s: (v[0], v[1]) for s, v in out.items()}


def evaluate(
    gateway: str,
    photos: list[Path],
    transforms: dict[str, Transform] = COPY_DETECTION,
    progress: Callable[[str], None] = print,
    headers: dict[str, str] | None = None,
    services: list[str] | None = None,
) -> Ranks:
    """Recall of ``services`` (default: every search service) and ``unified_res`` on every photo
    transformed by every transform; the references on the same queries."""
    ranks = Ranks(same=same_pictures(photos), photos=len(photos))
    refs = {name: HashIndex(fn) for name, fn in available().items()}
    originals = [load(p) for p in photos]
    for name, ref in refs.items():
        for image_id, img in enumerate(originals):
            ref.add(image_id, img)
        progress(f"reference {name}: hashed {len(originals)} originals")

    ref_seconds: dict[str, list[float]] = {name: [] for name in refs}
    gateway_seconds: list[float] = []
    with httpx.Client(timeout=300, headers=headers) as client:
        started = time.perf_counter()
        failures = index_originals(client, gateway, photos)
        ranks.index_seconds = time.perf_counter() - started
        progress(
            f"indexed {len(photos)} originals through the gateway in {ranks.index_seconds:.1f}s"
            + (f" (failed parts: {failures})" if failures else "")
        )
        before = upstream_seconds(client, gateway)
        for t_name, transform in transforms.items():
            t0 = time.perf_counter()
            for image_id, img in enumerate(originals):
                wanted = ranks.same[image_id]
                data = encode_query(transform(img))
                q0 = time.perf_counter()
                r = client.post(
                    f"{gateway}/reverse_search",
                    files={"image": ("q.jpg", data)},
                    data={"find_duplicate": "0"},
                )
                gateway_seconds.append(time.perf_counter() - q0)
                r.raise_for_status()
                reply = r.json()
                failed = reply.get("failed") or {}
                lists: dict[str, Hits] = {}
                for service, key in RESULT_KEYS.items():
                    if services is not None and service not in services:
                        continue
                    if service in failed or not isinstance(reply.get(key), list):
                        continue
                    lists[service] = reply[key]
                if not lists and not failed:
                    continue
                for service, hits in lists.items():
                    ranks.add(service, t_name, rank_of([h["image_id"] for h in hits], wanted))
                unified = [hit["image_id"] for hit in reply.get(UNIFIED, [])]
                ranks.add(UNIFIED, t_name, rank_of(unified, wanted))
                ranks.queries.append(Query(t_name, image_id, lists))
                decoded = Image.open(io.BytesIO(data)).convert("RGB")
                for name, ref in refs.items():
                    r0 = time.perf_counter()
                    found = ref.search(decoded, 10)
                    ref_seconds[name].append(time.perf_counter() - r0)
                    ranks.add(name, t_name, rank_of(found, wanted))
            progress(
                f"{t_name}: {len(originals)} queries in {time.perf_counter() - t0:.1f}s, "
                f"unified recall@1 {ranks.recall(UNIFIED, t_name, 1):.2f}"
            )
        after = upstream_seconds(client, gateway)
    for service, (total, count) in after.items():
        t_before, c_before = before.get(service, (0.0, 0.0))
        if count > c_before:
            ranks.seconds[service] = (total - t_before) / (count - c_before)
    ranks.seconds[UNIFIED] = float(np.mean(gateway_seconds)) if gateway_seconds else float("nan")
    for name, values in ref_seconds.items():
        if values:
            ranks.seconds[name] = float(np.mean(values))
    return ranks


def markdown_recall(ranks: Ranks) -> str:
    """Transforms as rows, methods as columns, "recall@1 / recall@10" cells, mean and latency rows."""
    methods = ranks.methods()
    transforms = ranks.transforms()
    lines = ["| transform | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in transforms:
        cells = []
        for m in methods:
            r1, r10 = ranks.recall(m, t, 1), ranks.recall(m, t, 10)
            cells.append("–" if np.isnan(r1) else f"{r1:.2f} / {r10:.2f}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    means = [f"**{ranks.mean_recall(m, 1):.2f} / {ranks.mean_recall(m, 10):.2f}**" for m in methods]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    lat = [f"{ranks.seconds[m] * 1000:.1f}" if m in ranks.seconds else "–" for m in methods]
    lines.append("| mean latency per query, ms | " + " | ".join(lat) + " |")
    return "\n".join(lines)
