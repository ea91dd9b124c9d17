"""Weighted reciprocal-rank fusion (pure functions)."""

from __future__ import annotations

from gateway.fusion import clean_hits, reciprocal_rank_fusion


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
