"""The fusion grid's fast scoring against the gateway's own fusion, query by query."""

from __future__ import annotations

import random

import numpy as np

from bench.copy_recall import fusion_grid
from bench.copy_recall.fusion_grid import Candidate, Recall, ReplyTable
from bench.copy_recall.ranks import Hits, Query, Ranks, rank_of

SERVICES = ["phash", "color", "local_features", "global_features"]
LENGTH = 10


def reply(rnd: random.Random, service: str, collection: int, source: int) -> Hits:
    """A service's reply as the gateway passes it on, with what makes fusion awkward: FAISS padding,
    repeated ids, exact ties, near-tie inlier counts, replies too short for a median."""
    size = rnd.choice([3, 8, 12])
    ids = rnd.sample(range(collection), size)
    if rnd.random() < 0.7 and source not in ids:
        ids[rnd.randrange(3)] = source
    if rnd.random() < 0.2:
        ids += [ids[0], -1]
    if service == "local_features":
        counts = sorted((rnd.choice([10, 20, 100, 110, 120]) for _ in ids), reverse=True)
        return [{"image_id": i, "matches": m} for i, m in zip(ids, counts, strict=True)]
    scale = {"phash": 300, "color": 1e6, "global_features": 1.0}[service]
    distances = sorted(rnd.choice([0.0, 0.1, 0.4, 0.5, 0.9]) * scale for _ in ids)
    return [{"image_id": i, "distance": d} for i, d in zip(ids, distances, strict=True)]


def replies(seed: int = 7, photos: int = 12, transforms: int = 3) -> Ranks:
    rnd = random.Random(seed)
    ranks = Ranks(same={i: {i} for i in range(photos)}, photos=photos)
    ranks.same[0] = ranks.same[1] = {0, 1}  # a byte-identical pair: either is right
    for t in range(transforms):
        for photo in range(photos):
            lists = {s: reply(rnd, s, photos, photo) for s in SERVICES if rnd.random() < 0.9}
            if photo % 5 == 0:  # two services in swapped order: equal scores, ties to break
                lists["color"] = list(reversed(lists.get("global_features", [])))
            ranks.queries.append(Query(f"t{t}", photo, lists))
    return ranks


def grid_sample() -> list[Candidate]:
    """Every 20th candidate of the grid, and every gate combination at equal weights."""
    services = sorted(SERVICES, key=lambda s: (s != "phash", s))
    everything = list(fusion_grid.candidates(services))
    equal = [c for c in everything if all(w == 1.0 for _, w in c.weights) and c.constant == 1.0]
    return everything[::20] + equal


def test_fast_fused_lists_are_the_gateways_fused_lists() -> None:
    ranks = replies()
    table = ReplyTable([q.lists for q in ranks.queries])
    relevant = table.relevant([ranks.same[q.image_id] for q in ranks.queries])
    checked = 0
    for c in grid_sample():
        order, voted = table.fused(c, LENGTH)
        places = table.first_right(c, relevant, LENGTH)
        for row, q in enumerate(ranks.queries):
            expected = c.fuse(q.lists, LENGTH)
            assert [
                int(table.ids[row, u]) for u, v in zip(order[row], voted[row], strict=True) if v
            ] == expected
            place = rank_of(expected, ranks.same[q.image_id])
            assert places[row] == (LENGTH if place is None else place), (c.label(), q)
            checked += 1
    assert checked > 200 * len(ranks.queries)


def test_recall_is_the_mean_over_transforms_of_each_transforms_recall() -> None:
    queries = [Query("a", 0, {}), Query("a", 1, {}), Query("b", 2, {}), Query("b", 3, {}), Query("b", 4, {})]
    places = np.array([0, 5, 0, 20, 20])
    assert Recall(queries, None)(places) == ((0.5 + 1 / 3) / 2, (1.0 + 1 / 3) / 2)
    assert Recall(queries, {0, 2})(places) == (1.0, 1.0)
    assert Recall(queries, {1, 3, 4})(places) == ((0.0 + 0.0) / 2, (1.0 + 0.0) / 2)
    assert all(np.isnan(Recall(queries, {99})(places)))


def test_search_ranks_candidates_by_selection_recall_and_scores_the_default() -> None:
    ranks = replies(seed=3, photos=14, transforms=2)
    scores, baseline = fusion_grid.search(ranks, SERVICES, LENGTH)
    assert baseline is not None and baseline.candidate == fusion_grid.current(
        sorted(SERVICES, key=lambda s: (s != "phash", s))
    )
    keys = [(-s.select_r1, -s.select_r10) for s in scores]
    assert keys == sorted(keys)
    # The winner's figures are the gateway's fusion's figures.
    best = scores[0]
    places = fusion_grid._ranks(ranks.queries, ranks.same, best.candidate, LENGTH)
    even = [
        p is not None and p < 1 for q, p in zip(ranks.queries, places, strict=True) if q.image_id % 2 == 0
    ]
    per_t = [
        np.mean(
            [
                p is not None and p < 1
                for q, p in zip(ranks.queries, places, strict=True)
                if q.transform == t and q.image_id % 2 == 0
            ]
        )
        for t in ("t0", "t1")
    ]
    assert even and best.select_r1 == float(np.mean(per_t))
