"""Weighted reciprocal-rank fusion (pure functions)."""

from __future__ import annotations

from gateway.fusion import clean_hits, reciprocal_rank_fusion, tolerant_ranks


def hits(*ids: int) -> list[dict[str, int]]:
    return [{"image_id": i, "distance": n} for n, i in enumerate(ids)]


def test_scores_are_weighted_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion({"a": hits(1, 2), "b": hits(2, 3)}, {"a": 1.0, "b": 2.0}, 10, 10)
    scores = {e["image_id"]: e["score"] for e in fused}
    assert scores[1] == round(1 / 11, 6)
    assert scores[2] == round(1 / 12 + 2 / 11, 6)
    assert scores[3] == round(2 / 12, 6)
    assert [e["image_id"] for e in fused] == [2, 3, 1]


def test_single_source_hits_are_kept_and_length_truncates() -> None:
    fused = reciprocal_rank_fusion({"a": hits(*range(30)), "b": hits(100)}, {}, 10, 5)
    assert len(fused) == 5
    assert {e["image_id"] for e in fused} == {0, 100, 1, 2, 3}


def test_padding_ids_and_repeats_never_appear() -> None:
    fused = reciprocal_rank_fusion({"a": [*hits(-1, 4, 4), {"image_id": "x"}]}, {}, 10, 10)
    assert fused == [{"image_id": 4, "score": round(1 / 11, 6)}]
    assert clean_hits(hits(-1, 5, 5, 6), 1) == [{"image_id": 5, "distance": 1}]


def test_zero_weight_leaves_a_service_out_and_empty_input_gives_nothing() -> None:
    assert reciprocal_rank_fusion({"a": hits(1)}, {"a": 0.0}, 10, 10) == []
    assert reciprocal_rank_fusion({}, {}, 10, 10) == []


def test_ties_break_by_best_rank_then_id() -> None:
    fused = reciprocal_rank_fusion({"a": hits(7, 8), "b": hits(8, 7)}, {}, 10, 10)
    assert [e["image_id"] for e in fused] == [7, 8]


def test_hits_beyond_a_service_match_distance_do_not_vote() -> None:
    rankings = {"phash": hits(5, 6), "color": hits(6, 5)}
    rankings["phash"][0]["distance"], rankings["phash"][1]["distance"] = 250, 260
    fused = reciprocal_rank_fusion(rankings, {"phash": 1.0, "color": 0.5}, 10, 10, {"phash": 128})
    assert [e["image_id"] for e in fused] == [6, 5]
    assert fused[0]["score"] == round(0.5 / 11, 6)


def test_near_ties_share_a_rank_so_another_service_decides() -> None:
    # local_features cannot tell a recoloured copy (2) from the source (1): 110 vs 100 inliers.
    local = [{"image_id": 2, "matches": 110}, {"image_id": 1, "matches": 100}, {"image_id": 3, "matches": 20}]
    color = [{"image_id": 1, "distance": 1e5}, {"image_id": 2, "distance": 4e6}]
    weights = {"local_features": 1.5, "color": 1.0}
    plain = reciprocal_rank_fusion({"local_features": local, "color": color}, weights, 1.0, 10)
    assert plain[0]["image_id"] == 2  # rank order alone lets the noise win
    tolerant = reciprocal_rank_fusion(
        {"local_features": local, "color": color}, weights, 1.0, 10, tie_tolerance={"local_features": 0.25}
    )
    assert tolerant[0]["image_id"] == 1
    # A clearly better hit keeps its lead: 3 is far behind both.
    assert tolerant_ranks(local, 0.25) == [1, 1, 3]
    assert tolerant_ranks(local, 0.0) == [1, 2, 3]


def test_only_hits_far_below_the_lists_median_distance_vote_when_gated_relatively() -> None:
    def spaced(*distances: float) -> list[dict[str, float]]:
        return [{"image_id": 10 + n, "distance": d} for n, d in enumerate(distances)]

    copy_found = spaced(2.0, 40.0, 41.0, 42.0, 43.0, 44.0)  # a copy stands out: median 42.5
    no_copy = spaced(30.0, 40.0, 41.0, 42.0, 43.0, 44.0)  # nearest is about as far as the rest
    gate = {"color": 0.5}
    assert [
        e["image_id"] for e in reciprocal_rank_fusion({"color": copy_found}, {}, 1, 10, None, None, gate)
    ] == [10]
    assert reciprocal_rank_fusion({"color": no_copy}, {}, 1, 10, None, None, gate) == []
    # Without the gate every neighbour votes; a list too short to have a distribution is not gated.
    assert len(reciprocal_rank_fusion({"color": no_copy}, {}, 1, 10)) == 6
    assert len(reciprocal_rank_fusion({"color": no_copy[:3]}, {}, 1, 10, None, None, gate)) == 3
    # Other services are untouched by a gate that names only color.
    fused = reciprocal_rank_fusion(
        {"color": no_copy, "global_features": hits(1, 2)}, {}, 1, 10, None, None, gate
    )
    assert [e["image_id"] for e in fused] == [1, 2]
