"""Choose the fusion settings (weights, constant, phash gate) from the evaluation's result lists.

Every candidate is scored offline over the per-service lists each ``/reverse_search`` returned, so
the winner behaves exactly the same inside the gateway. Selection uses half the photos (even ids) and
the other half reports how the winner does on photos it was not chosen on, so over-fitting to 100
photos shows.

Thousands of candidates times thousands of queries through the gateway's fusion one call at a time
took the better part of an hour, mostly re-cleaning and re-gating the same replies. Which hits of a
reply vote, and at what rank, depends only on that reply and the service's gates, so
:class:`ReplyTable` computes it once per (service, gates) with the gateway's own
:func:`gateway.fusion.voting_ranks`; a candidate then only sums ``weight / (constant + rank)`` and
sorts, for every query at once with numpy, in the same order of operations as
:func:`gateway.fusion.reciprocal_rank_fusion`. The candidates reported are scored again through that
function, query by query, and must agree.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.copy_recall.ranks import Hits, Query, Ranks, rank_of
from gateway.fusion import reciprocal_rank_fusion, voting_ranks
from gateway.settings import GatewaySettings

WEIGHT_STEPS = (0.0, 0.5, 1.0, 2.0)
CONSTANTS = (1.0, 3.0, 10.0, 30.0, 60.0)
PHASH_GATES: tuple[float | None, ...] = (None, 96.0, 128.0, 160.0)
#: ratio to the median distance of the service's own list (gateway.fusion.within_relative_distance),
#: applied to the appearance services (color, phash) alike
RELATIVE_GATES: tuple[float | None, ...] = (None, 0.5, 0.7, 0.85)
APPEARANCE = ("color", "phash")
#: best candidates shown in the report (and checked against the gateway's fusion, query by query)
REPORTED = 10


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

    def gates(self, service: str) -> tuple[float | None, float | None]:
        """(match distance, ratio to the reply's median distance) that gate ``service``'s votes."""
        return (
            self.phash_gate if service == "phash" else None,
            self.relative_gate if service in APPEARANCE else None,
        )

    def fuse(self, lists: Mapping[str, list[dict[str, Any]]], length: int) -> list[int]:
        """The fused ids, as the gateway fuses with these settings."""
        gate = {"phash": self.phash_gate} if self.phash_gate is not None else {}
        relative = {} if self.relative_gate is None else dict.fromkeys(APPEARANCE, self.relative_gate)
        fused = reciprocal_rank_fusion(
            lists, dict(self.weights), self.constant, length, gate, tie_tolerance(), relative
        )
        return [h["image_id"] for h in fused]


class ReplyTable:
    """The per-service replies of many queries as arrays: every candidate fused for all queries at once.

    Column ``u`` of query ``q`` is one image id found by any service (``ids[q, u]``, -1 = padding).
    """

    def __init__(self, lists: Sequence[Mapping[str, Hits]], tolerance: Mapping[str, float] | None = None):
        self.lists = lists
        self.tolerance = dict(tie_tolerance() if tolerance is None else tolerance)
        # The gateway sums the services in the order of its reply; the same order here gives the
        # same floating-point scores, so ties break the same way. Queries are grouped by that order
        # (one group when every reply has the same services).
        groups: dict[tuple[str, ...], list[int]] = {}
        for row, q in enumerate(lists):
            groups.setdefault(tuple(q), []).append(row)
        self._groups: list[tuple[tuple[str, ...], slice | np.ndarray]] = [
            (order, slice(None) if len(groups) == 1 else np.array(rows)) for order, rows in groups.items()
        ]
        columns = [
            {i: u for u, i in enumerate(dict.fromkeys(i for _, i in self._all_votes(q)))} for q in lists
        ]
        width = max((len(c) for c in columns), default=0)
        self.ids = np.full((len(lists), max(width, 1)), -1, dtype=np.int64)
        for row, c in enumerate(columns):
            self.ids[row, : len(c)] = list(c)
        self._columns = columns
        self._ranks: dict[tuple[str, float | None, float | None], np.ndarray] = {}

    def _all_votes(self, lists: Mapping[str, Hits]) -> Iterable[tuple[str, int]]:
        for service, hits in lists.items():
            for image_id, _ in voting_ranks(hits):
                yield service, image_id

    def ranks(self, service: str, max_distance: float | None, ratio: float | None) -> np.ndarray:
        """(queries, columns) rank of each image in ``service``'s reply when gated so; inf = no vote."""
        key = (service, max_distance, ratio)
        if key not in self._ranks:
            out = np.full(self.ids.shape, np.inf)
            tolerance = self.tolerance.get(service, 0.0)
            for row, (lists, columns) in enumerate(zip(self.lists, self._columns, strict=True)):
                if service in lists:
                    for image_id, rank in voting_ranks(lists[service], max_distance, ratio, tolerance):
                        out[row, columns[image_id]] = rank
            self._ranks[key] = out
        return self._ranks[key]

    def sort_keys(self, c: Candidate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(queries, columns) keys of the gateway's order: minus the fused score (inf = no vote, last),
        then the best single rank, then the id; and which columns got a vote."""
        weights = dict(c.weights)
        score = np.zeros(self.ids.shape)
        best = np.full(self.ids.shape, np.inf)
        for services, rows in self._groups:
            part = np.zeros(score[rows].shape)
            for service in services:
                weight = float(weights.get(service, 1.0))
                if weight <= 0:
                    continue
                ranks = self.ranks(service, *c.gates(service))[rows]
                part = part + weight / (c.constant + ranks)  # no vote: + 0.0, which changes nothing
                best[rows] = np.minimum(best[rows], ranks)
            score[rows] = part
        voted = np.isfinite(best)
        return np.where(voted, -score, np.inf), best, voted

    def fused(self, c: Candidate, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns of each query's fused list, best first, (queries, ``length``), and which of them
        hold an image (a fused list shorter than ``length`` is padded)."""
        key, best, voted = self.sort_keys(c)
        order = np.lexsort((self.ids, best, key), axis=-1)[:, :length]
        return order, np.take_along_axis(voted, order, axis=-1)

    def relevant(self, wanted: Sequence[set[int]]) -> np.ndarray:
        """(queries, columns): the image of the column is one of its query's right answers."""
        out = np.zeros(self.ids.shape, dtype=bool)
        for row, (columns, right) in enumerate(zip(self._columns, wanted, strict=True)):
            for image_id in right & columns.keys():
                out[row, columns[image_id]] = True
        return out

    def hits(self, c: Candidate, relevant: np.ndarray, length: int) -> np.ndarray:
        """(queries, ``length``): place ``i`` of the query's fused list holds a right answer."""
        order, voted = self.fused(c, length)
        return np.take_along_axis(relevant, order, axis=-1) & voted

    def first_right(self, c: Candidate, relevant: np.ndarray, length: int) -> np.ndarray:
        """Place (0-based) of each query's first right answer in its fused list; ``length`` = none.

        Without sorting (the grid's hot loop): the first right answer is the right column with the
        smallest key, and its place is the number of columns whose key is smaller."""
        key, best, voted = self.sort_keys(c)
        right = relevant & voted
        key1 = np.where(right, key, np.inf).min(axis=-1, keepdims=True)
        tied = right & (key == key1)
        best1 = np.where(tied, best, np.inf).min(axis=-1, keepdims=True)
        tied &= best == best1
        id1 = np.where(tied, self.ids, np.iinfo(np.int64).max).min(axis=-1, keepdims=True)
        before = voted & (
            (key < key1) | (key == key1) & ((best < best1) | (best == best1) & (self.ids < id1))
        )
        place = before.sum(axis=-1)
        return np.where(right.any(axis=-1) & (place < length), place, length)


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
    """Place of each query's source in the fused list, through the gateway's function (the reference
    the fast scoring is checked against)."""
    return [rank_of(c.fuse(q.lists, length), same[q.image_id]) for q in queries]


class Recall:
    """Mean over transforms of recall@1 and @10 from the places of the sources, over the queries whose
    photo id is in ``keep`` (None: all)."""

    def __init__(self, queries: list[Query], keep: set[int] | None):
        transforms = list(dict.fromkeys(q.transform for q in queries))
        self.group = np.array([transforms.index(q.transform) for q in queries], dtype=np.int64)
        self.keep = np.array([keep is None or q.image_id in keep for q in queries], dtype=bool)
        self.count = np.bincount(self.group[self.keep], minlength=len(transforms)).astype(float)

    def __call__(self, places: np.ndarray) -> tuple[float, float]:
        present = self.count > 0
        if not present.any():
            return float("nan"), float("nan")
        r1, r10 = (
            np.bincount(self.group[self.keep], (places[self.keep] < at).astype(float), len(present))
            for at in (1, 10)
        )
        return float(np.mean(r1[present] / self.count[present])), float(
            np.mean(r10[present] / self.count[present])
        )


def search(ranks: Ranks, services: list[str], length: int = 20) -> tuple[list[Score], Score | None]:
    """Every candidate's score, best first (by recall@1 then @10 on the selection half), and the
    gateway's current settings scored the same way."""
    services = sorted(services, key=lambda s: (s != "phash", s))
    ids = {q.image_id for q in ranks.queries}
    select = {i for i in ids if i % 2 == 0}
    heldout = (ids - select) or select
    table = ReplyTable([q.lists for q in ranks.queries])
    relevant = table.relevant([ranks.same[q.image_id] for q in ranks.queries])
    halves = [Recall(ranks.queries, keep) for keep in (select, heldout, None)]

    def score(c: Candidate) -> Score:
        places = table.first_right(c, relevant, length)
        (s1, s10), (h1, h10), (a1, a10) = (half(places) for half in halves)
        return Score(c, s1, s10, h1, h10, a1, a10)

    scores = [score(c) for c in candidates(services)]
    scores.sort(key=lambda s: (-s.select_r1, -s.select_r10, -s.all_r1, -s.all_r10, s.candidate.label()))
    baseline = score(current(services)) if services else None
    for s in [*scores[:REPORTED], *scores[-1:], *([baseline] if baseline else [])]:
        slow = _ranks(ranks.queries, ranks.same, s.candidate, length)
        fast = table.first_right(s.candidate, relevant, length)
        if [length if r is None else r for r in slow] != fast.tolist():
            raise AssertionError(f"fast scoring disagrees with the gateway's fusion: {s.candidate.label()}")
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


def markdown(scores: list[Score], baseline: Score | None, top: int = REPORTED) -> str:
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
