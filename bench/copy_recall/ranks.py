"""What the copy-recall parts share: the rank of each query's source per (method, transform), recall@k
from it, and the recall table.

A query is a transformed copy of one of the photos; its source is found when a result is the photo
or a byte-identical copy of its file (``ambience_support.photos.same_source_groups``: the photo set
holds one file under two names, and returning either is finding the source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ambience_support.photos import same_source_groups

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

    @classmethod
    def of(cls, photos: list[Path]) -> Ranks:
        """Empty ranks for queries made from ``photos`` (photo id = position in the list)."""
        return cls(same=dict(enumerate(same_source_groups(photos))), photos=len(photos))

    def add(self, method: str, transform: str, rank: int | None) -> None:
        self.ranks.setdefault((method, transform), []).append(rank)

    def add_hits(self, method: str, transform: str, image_id: int, ids: list[int]) -> int | None:
        """Record the rank of photo ``image_id``'s source in the result ``ids``; returns it."""
        rank = rank_of(ids, self.same[image_id])
        self.add(method, transform, rank)
        return rank

    def recall(self, method: str, transform: str, at: int) -> float:
        values = self.ranks.get((method, transform), [])
        return float(np.mean([r is not None and r < at for r in values])) if values else float("nan")

    def mean_recall(self, method: str, at: int) -> float:
        return float(np.nanmean([self.recall(method, t, at) for t in self.transforms()]))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.ranks))

    def transforms(self) -> list[str]:
        return list(dict.fromkeys(t for _, t in self.ranks))


def rank_of(ids: list[int], wanted: set[int]) -> int | None:
    for i, image_id in enumerate(ids):
        if image_id in wanted:
            return i
    return None


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
