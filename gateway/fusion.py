"""Rank fusion for /reverse_search: pure functions, no I/O.

Weighted reciprocal-rank fusion: an image's score is the sum over the services that returned it of
``weight[service] / (constant + rank)`` with ranks from 1. Ranks, not distances, are fused because
the services' distances live on unrelated scales (Hamming bits, L1 of histograms, cosine, inlier
counts). An image found by one service only still gets that service's share (single-source hits are
kept). A small constant lets a service's first place outweigh several middling places elsewhere.

A service's k nearest images always exist, however far they are: a 576-bit phash of a crop is ~270
bits from everything, its "first place" is noise. ``max_distance`` gates such services: only hits
within a service's match distance take part in the fusion (they still appear in the service's own
list of the reply).

Absolute distances do not transfer between collections for every service (colour histograms of a
collection of beaches are all close), so ``relative_distance`` gates by the reply's own
distribution instead: a hit votes only when its distance is at most ``ratio`` times the median
distance of the service's list. A copy stands out far below the bulk of the list and votes; when the
query has no copy, colour and phash neighbours are about as far as everything else (no better than
chance on content) and stay out, so they do not dilute the semantic services' lists.

``tie_tolerance`` makes ranks honest where a service cannot tell images apart: local features give
a recoloured copy of the same scene almost the same inlier count as the scene itself, so their order
among such images is noise. A hit's rank is 1 + the number of hits *clearly* better than it (inlier
count more than ``1 + tolerance`` times larger, or distance more than ``1 + tolerance`` times
smaller); near-ties share a rank and another service decides between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def clean_hits(hits: Sequence[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """A service's reply as the gateway passes it on: valid ids only (no FAISS padding -1), each id
    once (its best place), at most ``limit``."""
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for hit in hits:
        image_id = hit.get("image_id")
        if not isinstance(image_id, int) or isinstance(image_id, bool) or image_id < 0 or image_id in seen:
            continue
        seen.add(image_id)
        out.append(dict(hit))
        if len(out) >= limit:
            break
    return out


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Mapping[str, Any]]],
    weights: Mapping[str, float],
    constant: float,
    length: int,
    max_distance: Mapping[str, float] | None = None,
    tie_tolerance: Mapping[str, float] | None = None,
    relative_distance: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Fuse per-service rankings (best first) into ``[{"image_id", "score"}]``, best first.

    Services without a weight count 1.0; a weight of 0 leaves a service out. Ties are broken by the
    best single rank, then by id, so the order is deterministic.
    """
    scores: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for service, hits in rankings.items():
        weight = float(weights.get(service, 1.0))
        if weight <= 0:
            continue
        votes = voting_ranks(
            hits,
            (max_distance or {}).get(service),
            (relative_distance or {}).get(service),
            (tie_tolerance or {}).get(service, 0.0),
        )
        for image_id, rank in votes:
            scores[image_id] = scores.get(image_id, 0.0) + weight / (constant + rank)
            best_rank[image_id] = min(best_rank.get(image_id, rank), rank)
    order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))
    return [{"image_id": i, "score": round(scores[i], 6)} for i in order[:length]]


def voting_ranks(
    hits: Sequence[Mapping[str, Any]],
    max_distance: float | None = None,
    relative_distance: float | None = None,
    tolerance: float = 0.0,
) -> list[tuple[int, int]]:
    """``(image id, rank from 1)`` of the hits of one service's reply that vote in the fusion: valid
    ids once each, within ``max_distance`` and within ``relative_distance`` times the reply's median
    distance, near-ties sharing a rank within ``tolerance``."""
    reply = clean_hits(hits, len(hits))
    kept = reply
    if max_distance is not None:
        kept = [h for h in kept if isinstance(d := h.get("distance"), int | float) and d <= max_distance]
    if relative_distance is not None:
        kept = within_relative_distance(kept, reply, relative_distance)
    ranks = tolerant_ranks(kept, tolerance)
    return [(int(hit["image_id"]), rank) for rank, hit in zip(ranks, kept, strict=True)]


#: fewest distances a list needs before its median says what "far" is for this query
MIN_DISTRIBUTION = 5


def within_relative_distance(
    kept: Sequence[Mapping[str, Any]], reply: Sequence[Mapping[str, Any]], ratio: float
) -> list[Mapping[str, Any]]:
    """The hits of ``kept`` whose distance is at most ``ratio`` times the median distance of the whole
    ``reply``. A reply too short to have a distribution gates nothing; a median of 0 (every hit an
    exact copy) keeps the exact copies only."""
    distances = [float(h["distance"]) for h in reply if isinstance(h.get("distance"), int | float)]
    if len(distances) < MIN_DISTRIBUTION:
        return list(kept)
    limit = ratio * float(np.median(distances))
    return [h for h in kept if isinstance(h.get("distance"), int | float) and h["distance"] <= limit]


def tolerant_ranks(hits: Sequence[Mapping[str, Any]], tolerance: float) -> list[int]:
    """Ranks from 1 of hits given best first; with ``tolerance`` > 0, near-ties share a rank."""
    if tolerance <= 0:
        return list(range(1, len(hits) + 1))
    strength = [_strength(hit) for hit in hits]
    if any(s is None for s in strength):
        return list(range(1, len(hits) + 1))
    factor = 1.0 + tolerance
    # strength: larger is better and positive (inlier counts, or 1 / (1 + distance)).
    return [1 + sum(1 for other in strength if other > s * factor) for s in strength]  # type: ignore[operator]


def _strength(hit: Mapping[str, Any]) -> float | None:
    if isinstance(hit.get("matches"), int | float):
        return float(hit["matches"])
    if isinstance(hit.get("distance"), int | float):
        return 1.0 / (1.0 + max(float(hit["distance"]), 0.0))
    return None
