"""caltech_bench's fusion table: precision@10 on each service's gateway-length lists, mAP@100 on the
100-result lists, fused by the gateway's own fusion; on synthetic lists, and the bench's --small run
on caltech101-dev (skipped when absent)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from bench.caltech_bench import MAP_AT, REPO, RESULT_K, SERVICES, Collected, default_caltech, fusion_report

#: Left out of day-to-day runs (pytest -m "not slow"): caltech101-dev through the bench.
pytestmark = pytest.mark.slow

PER_CLASS = 120


def hits(service: str, ids: list[int]) -> list[dict[str, Any]]:
    if service == "local_features":
        return [{"image_id": i, "matches": 200 - rank} for rank, i in enumerate(ids)]
    scale = {"phash": 1, "color": 1e4, "global_features": 0.01}[service]
    return [{"image_id": i, "distance": (rank + 1) * scale} for rank, i in enumerate(ids)]


def table_row(out: str, label: str) -> list[float]:
    (line,) = [line for line in out.splitlines() if line.startswith(f"| {label}")]
    return [float(cell) for cell in line.strip("|").split("|")[1:]]


def test_map_column_scores_the_100_result_lists_and_their_fusion(capsys: pytest.CaptureFixture[str]) -> None:
    """Every service puts the query's class only after its first 20 results: precision@10 (on the
    20-result lists the gateway asks by default) is 0, mAP@100 (on the 100-result lists) is not."""
    labels = np.array(["a"] * PER_CLASS + ["b"] * PER_CLASS)
    query = 0
    other_class = list(range(PER_CLASS, PER_CLASS + RESULT_K))
    same_class = list(range(1, MAP_AT - RESULT_K + 1))
    long = {s: [hits(s, other_class + same_class)] for s in SERVICES}
    short = {s: [lists[0][:RESULT_K]] for s, lists in long.items()}
    got = Collected(np.zeros((0, 0), np.float32), short, [query], {}, long_lists=long)
    got.long_source = dict.fromkeys(SERVICES, "synthetic")
    fusion_report(labels, got)
    out = capsys.readouterr().out

    # AP over the first 100: hits at ranks 21..100, the relevant set (119 others) capped at 100
    expected = sum(h / (RESULT_K + h) for h in range(1, len(same_class) + 1)) / MAP_AT
    for service in SERVICES:
        assert table_row(out, f"`{service}` alone") == pytest.approx([0.0, expected], abs=5e-4)
    precision, fused_map = table_row(out, "**`unified_res`, gateway defaults**")
    assert precision == 0.0
    assert fused_map > 0.1  # fused into 100, not the gateway's default 20 (that would score 0)
    assert "AMBIENCE_GATEWAY_RESULT_K=100" in out and "AMBIENCE_GATEWAY_FUSED_LENGTH=100" in out


@pytest.mark.timeout(600)  # 72 images through four services: under a minute on two idle cores
def test_small_run_scores_the_100_result_lists_next_to_the_gateways_lists() -> None:
    caltech = default_caltech()
    if not caltech.is_dir():
        pytest.skip(f"caltech101-dev not found at {caltech}")
    env = {k: v for k, v in os.environ.items() if k != "AMBIENCE_BENCH_CACHE"}  # extract, not read
    done = subprocess.run(
        [sys.executable, "-m", "bench.caltech_bench", "--small", "--caltech", str(caltech)],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| list | precision@10 (result_k 20) | mAP@100 (result_k 100) |" in out
    for label in [*(f"`{s}` alone" for s in SERVICES), "**`unified_res`, gateway defaults**"]:
        assert all(0.0 <= figure <= 1.0 for figure in table_row(out, label)), label
    # global_features' two lengths agree (checked in the bench), phash and color asked 100 rank
    # their first 20 as they did asked 20, local_features' short lists are reused as complete
    queries = int(re.search(r"; (\d+) queries", out).group(1))  # type: ignore[union-attr]
    assert "first 20 of each 100-result list are its 20-result list, checked" in out
    for service in ("phash", "color"):
        assert re.search(rf"{service}: extracted again[^;]*; [^;]* list for {queries}/{queries} queries", out)
    assert "local_features: the 20-result lists, already complete" in out
