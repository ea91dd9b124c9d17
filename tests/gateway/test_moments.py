"""The capture-time split of moments (gateway/moments.py)."""

from gateway.moments import split_by_time


def test_split_by_time_never_spans_a_gap() -> None:
    times = {1: 0.0, 2: 100.0, 3: 5000.0, 4: 5050.0}
    parts = split_by_time([2, 3, 1, 9, 4], times, max_gap_s=600)
    assert parts == [[2, 1, 9], [3, 4]]  # 9 has no time: it stays with the representative
    assert split_by_time([1, 2, 9], times, 600) == [[1, 2, 9]]
