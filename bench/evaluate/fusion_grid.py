"""Choose the fusion settings (weights, constant, phash gate) from the evaluation's result lists.

Every candidate is scored offline with the gateway's own :func:`gateway.fusion.reciprocal_rank_fusion`
over the per-service lists each ``/reverse_search`` returned, so the winner behaves exactly the same
inside the gateway. Selection uses half the photos (even ids) and the other half reports how the
winner does on photos it was not chosen on, so over-fitting to 100 photos shows.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.evaluate.retrieval import Query, Ranks, rank_of
from gateway.fusion import reciprocal_rank_fusion
from gateway.settings import GatewaySettings

WEIGHT_STEPS = (0.0, 0.5, 1.0, 2.0)
CONSTANTS = (1.0, 3.0, 10.0, 30.0, 60.0)
PHASH_GATES: tuple[float | None, ...] = (None, 96.0, 128.0, 160.0)
#: ratio to the median distance of the service's own list (gateway.fusion.within_relative_distance),
#: applied to the appearance services (color, phash) alike
RELATIVE_GATES: tuple[float | None, ...] = (None, 0.5, 0.7, 0.85)
APPEARANCE = ("color", "phash")


@dataclass(frozen=True)
class Candidate:
    weights: tuple[tuple[str, float], ...]
    constant: float
    phash_gate: float | None
    relative_gate: float | None = None

    def label(self) -> str:
        w = ", ".join(f"{s} {v:g}" for s, v in self.weights)
        gate = "none" if self.phash_gate is None else f"{self.phash_gate:g}"
        relative = "none" if self.relative_gate is None else f"{self.relative_gate:g}"
        return f"{w}; c={self.constant:g}; phash gate {gate}; relative gate {relative}"

    def fuse(self, lists: dict[str, list[dict[str, Any]]], length: int) -> list[int]:
        """The fused ids, as the gateway fuses with these settings."""
        gate = {"phash": self.phash_gate} if self.phash_gate is not None else {}
        relative = {} if self.relative_gate is None else dict.fromkeys(APPEARANCE, self.relative_gate)
        fused = reciprocal_rank_fusion(
            lists, dict(self.weights), self.constant, length, gate, tie_tolerance(), relative
        )
        return [h["image_id"] for h in fused]


@functools.cache
def tie_tolerance() -> dict[str, float]:
    """The gateway's tie tolerance (not part of the grid): candidates fuse as the gateway does."""
    return dict(GatewaySettings().fusion_tie_tolerance)


@dataclass
class Score:
    candidate: Candidate
    #: mean over transforms of recall@1 / recall@10, on the selection half and the held-out half
    select_r1: float
    select_r10: float
    heldout_r1: float
    heldout_r10: float
    all_r1: float
    all_r10: float


def candidates(services: list[str]) -> Iterable[Candidate]:
    """Weights relative to the first service (fusion ranks are invariant to scaling all weights)."""
    if not services:
        return
    anchor, rest = services[0], services[1:]
    for steps in itertools.product(WEIGHT_STEPS, repeat=len(rest)):
        weights = ((anchor, 1.0), *zip(rest, steps, strict=True))
        for constant in CONSTANTS:
            for gate in PHASH_GATES if "phash" in services else (None,):
                for relative in RELATIVE_GATES if set(APPEARANCE) & set(services) else (None,):
                    yield Candidate(weights, constant, gate, relative)


def current(services: list[str]) -> Candidate:
    s = GatewaySettings()
    return Candidate(
        tuple((name, float(s.fusion_weights.get(name, 1.0))) for name in services),
        s.fusion_constant,
        s.fusion_max_distance.get("phash"),
        s.fusion_relative_distance.get("color", s.fusion_relative_distance.get("phash")),
    )


def _ranks(queries: list[Query], same: dict[int, set[int]], c: Candidate, length: int) -> list[int | None]:
    return [rank_of(c.fuse(q.lists, length), same[q.image_id]) for q in queries]


def _recall(queries: list[Query], ranks: list[int | None], keep: set[int] | None) -> tuple[float, float]:
    """Mean over transforms of recall@1 and @10, over the queries whose photo id is in ``keep``."""
    per_t: dict[str, list[int | None]] = {}
    for q, r in zip(queries, ranks, strict=True):
        if keep is None or q.image_id in keep:
            per_t.setdefault(q.transform, []).append(r)
    if not per_t:
        return float("nan"), float("nan")
    r1 = np.mean([np.mean([r is not None and r < 1 for r in v]) for v in per_t.values()])
    r10 = np.mean([np.mean([r is not None and r < 10 for r in v]) for v in per_t.values()])
    return float(r1), float(r10)


def search(ranks: Ranks, services: list[str], length: int = 20) -> tuple[list[Score], Score | None]:
    """Every candidate's score, best first (by recall@1 then @10 on the selection half), and the
    gateway's current settings scored the same way."""
    services = sorted(services, key=lambda s: (s != "phash", s))
    ids = {q.image_id for q in ranks.queries}
    select = {i for i in ids if i % 2 == 0}
    heldout = (ids - select) or select

    def score(c: Candidate) -> Score:
        found = _ranks(ranks.queries, ranks.same, c, length)
        return Score(
            c,
            *_recall(ranks.queries, found, select),
            *_recall(ranks.queries, found, heldout),
            *_recall(ranks.queries, found, None),
        )

    scores = [score(c) for c in candidates(services)]
    scores.sort(key=lambda s: (-s.select_r1, -s.select_r10, -s.all_r1, -s.all_r10, s.candidate.label()))
    baseline = score(current(services)) if services else None
    return scores, baseline


def recommend(scores: list[Score], baseline: Score | None) -> Score | None:
    """The best candidate when it beats the current default on the selection half and does not lose
    on the held-out half; otherwise the current default stays (None)."""
    if not scores or baseline is None:
        return None
    best = scores[0]
    better = (best.select_r1, best.select_r10) > (baseline.select_r1, baseline.select_r10)
    holds = best.heldout_r1 + best.heldout_r10 >= baseline.heldout_r1 + baseline.heldout_r10
    return best if better and holds else None


def markdown(scores: list[Score], baseline: Score | None, top: int = 10) -> str:
    if not scores:
        return "No per-service result lists: no fusion candidates scored."
    lines = [
        f"{len(scores)} candidate settings scored; best {top} by recall@1 on the selection half "
        "(even photo ids), then the same figures on the held-out half (odd ids) and on all queries. "
        "Cells: mean over transforms of recall@1 / recall@10 of `unified_res`.",
        "",
        "| # | weights; constant; phash gate; relative gate | selection | held-out | all |",
        "|---|---|---|---|---|",
    ]
    rows = [("current default", baseline)] if baseline else []
    rows += [(str(i + 1), s) for i, s in enumerate(scores[:top])]
    worst = scores[-1]
    rows.append(("worst", worst))
    for tag, s in rows:
        assert s is not None
        lines.append(
            f"| {tag} | {s.candidate.label()} | {s.select_r1:.3f} / {s.select_r10:.3f} | "
            f"{s.heldout_r1:.3f} / {s.heldout_r10:.3f} | {s.all_r1:.3f} / {s.all_r10:.3f} |"
        )
    return "\n".join(lines)
