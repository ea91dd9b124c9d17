"""Copy-detection recall of every search service and of the fused ranking, through the gateway.

The originals are added with ``/calculate_all_image_features``; every transformed copy is sent to
``/reverse_search`` (normal mode) and the rank of its source is read from each service's result
list and from ``unified_res``. References (imagehash, PDQ) are evaluated on the same queries in
this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageOps

from bench.evaluate.references import HashIndex, available
from bench.evaluate.transforms import TRANSFORMS, encode_query

RESULT_KEYS = {
    "phash": "phash_res",
    "color": "color_res",
    "local_features": "local_features_res",
    "global_features": "global_features_res",
    "image_text": "image_text_res",
}


@dataclass
class Ranks:
    """rank of the source (0-based; None = not found) per (method, transform)."""

    ranks: dict[tuple[str, str], list[int | None]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    #: raw per-service result lists, kept to evaluate other fusion weights offline
    lists: list[tuple[str, int, dict[str, list[int]]]] = field(default_factory=list)

    def add(self, method: str, transform: str, rank: int | None) -> None:
        self.ranks.setdefault((method, transform), []).append(rank)

    def recall(self, method: str, transform: str, at: int) -> float:
        values = self.ranks.get((method, transform), [])
        return float(np.mean([r is not None and r < at for r in values])) if values else float("nan")

    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.ranks))


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


def index_originals(client: httpx.Client, gateway: str, photos: list[Path]) -> None:
    def add(item: tuple[int, Path]) -> None:
        image_id, path = item
        r = client.post(
            f"{gateway}/calculate_all_image_features",
            files={"image": (path.name, path.read_bytes())},
            data={"image_id": str(image_id)},
        )
        r.raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, enumerate(photos)))


def evaluate(
    gateway: str,
    photos: list[Path],
    transforms: dict[str, Callable[[Image.Image], Image.Image]] = TRANSFORMS,
    progress: Callable[[str], None] = print,
    headers: dict[str, str] | None = None,
) -> Ranks:
    ranks = Ranks()
    # Byte-identical files are the same picture: finding either is right.
    digests: dict[bytes, set[int]] = {}
    for image_id, path in enumerate(photos):
        digests.setdefault(path.read_bytes(), set()).add(image_id)
    same = {image_id: ids for ids in digests.values() for image_id in ids}

    refs = {name: HashIndex(fn) for name, fn in available().items()}
    originals = [load(p) for p in photos]
    for name, ref in refs.items():
        for image_id, img in enumerate(originals):
            ref.add(image_id, img)
        progress(f"reference {name}: indexed {len(originals)}")

    with httpx.Client(timeout=300, headers=headers) as client:
        started = time.perf_counter()
        index_originals(client, gateway, photos)
        progress(
            f"indexed {len(photos)} originals through the gateway in {time.perf_counter() - started:.1f}s"
        )
        for t_name, transform in transforms.items():
            t0 = time.perf_counter()
            for image_id, img in enumerate(originals):
                query = transform(img)
                data = encode_query(query)
                q0 = time.perf_counter()
                r = client.post(
                    f"{gateway}/reverse_search",
                    files={"image": ("q.jpg", data)},
                    data={"find_duplicate": "0"},
                )
                ranks.seconds.setdefault("gateway /reverse_search", []).append(time.perf_counter() - q0)
                r.raise_for_status()
                reply = r.json()
                lists: dict[str, list[int]] = {}
                for service, key in RESULT_KEYS.items():
                    if key in reply and isinstance(reply[key], list):
                        lists[service] = [hit["image_id"] for hit in reply[key]]
                        ranks.add(service, t_name, rank_of(lists[service], same[image_id]))
                for service, ms in (reply.get("timings_ms") or {}).items():
                    ranks.seconds.setdefault(service, []).append(ms / 1000)
                unified = [hit["image_id"] for hit in reply.get("unified_res", [])]
                ranks.add("unified_res", t_name, rank_of(unified, same[image_id]))
                ranks.lists.append((t_name, image_id, lists))
                decoded = Image.open(__import__("io").BytesIO(data)).convert("RGB")
                for name, ref in refs.items():
                    r0 = time.perf_counter()
                    ranks.add(name, t_name, rank_of(ref.search(decoded, 10), same[image_id]))
                    ranks.seconds.setdefault(name, []).append(time.perf_counter() - r0)
            progress(
                f"{t_name}: {len(originals)} queries in {time.perf_counter() - t0:.1f}s, "
                f"unified recall@1 {ranks.recall('unified_res', t_name, 1):.2f}"
            )
    return ranks


def fused(lists: dict[str, list[int]], weights: dict[str, float], k: float) -> list[int]:
    """Weighted reciprocal-rank fusion (the gateway's formula), for offline weight selection."""
    scores: dict[int, float] = {}
    for service, ids in lists.items():
        w = weights.get(service, 0.0)
        for rank, image_id in enumerate(ids):
            scores[image_id] = scores.get(image_id, 0.0) + w / (k + rank + 1)
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def markdown_recall(ranks: Ranks) -> str:
    methods = ranks.methods()
    transforms = list(dict.fromkeys(t for _, t in ranks.ranks))
    lines = ["| transform | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in transforms:
        cells = []
        for m in methods:
            r1, r10 = ranks.recall(m, t, 1), ranks.recall(m, t, 10)
            cells.append("–" if np.isnan(r1) else f"{r1:.2f} / {r10:.2f}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    means = []
    for m in methods:
        r1 = np.nanmean([ranks.recall(m, t, 1) for t in transforms])
        r10 = np.nanmean([ranks.recall(m, t, 10) for t in transforms])
        means.append(f"**{r1:.2f} / {r10:.2f}**")
    lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines)
