"""The evaluation command end to end in small mode (real stack, real photos), into a temp report: the
session's smoke run (tests/bench/conftest.py) and a partial run of one bench."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from ambience_support.evaluation import SmallEvaluation, block, run_evaluate
from bench.evaluate import benches, report


def test_report_update_keeps_prose_and_replaces_only_generated_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(
        "# Benchmarks\n\n## kept\n\nHand-written prose.\n\n"
        + report.block("a", "old figure 1.0")
        + "\n\nMore prose.\n\n"
        + report.block("untouched", "figure of another run")
        + "\n"
    )
    report.write(doc, [("a", "## a", "new figure 2.0"), ("b", "## b section", "first figure")], "HEADER")
    text = doc.read_text()
    assert "Hand-written prose." in text and "More prose." in text
    assert "new figure 2.0" in text and "old figure 1.0" not in text
    assert "figure of another run" in text
    assert text.index("HEADER") < text.index("## kept")  # header right under the title
    assert text.index("## b section") < text.index("first figure")  # new block appended with heading
    report.write(doc, [("a", "## a", "third")], "HEADER 2")
    assert doc.read_text().count("begin generated: a -->") == 1


@pytest.mark.slow
def test_small_run_writes_report_with_every_section(small_evaluation: SmallEvaluation) -> None:
    """The smallest complete run (SMOKE_ARGS): every section, and every listed bench ran and wrote its
    block."""
    text, folder = small_evaluation.text, small_evaluation.doc.parent
    assert re.search(r"Machine: .+, \d+ cores", text) and "faiss-cpu" in text
    for key in ("header", "evaluate.retrieval", "evaluate.fusion", "evaluate.scale"):
        assert f"<!-- begin generated: {key} -->" in text, key
    not_run = [m for m in benches.BENCHES if "**Not measured in this run**" in block(text, f"bench.{m}")]
    assert not not_run, f"benches that failed or ran over their time: {not_run}"
    # Plausible recall: the fused ranking finds every mirrored and JPEG-compressed copy.
    retrieval = text.split("begin generated: evaluate.retrieval")[1].split("end generated")[0]
    header = next(line for line in retrieval.splitlines() if line.startswith("| transform"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for transform in ("mirror", "jpeg_q20"):
        row = next(line for line in retrieval.splitlines() if line.startswith(f"| {transform} "))
        cells = dict(zip(columns, [c.strip() for c in row.strip("|").split("|")], strict=True))
        assert cells["unified_res"] == "1.00 / 1.00", (transform, cells)
        assert cells["phash"] == "1.00 / 1.00", (transform, cells)
        if importlib.util.find_spec("pdqhash"):
            assert cells["PDQ (256 bits)"].endswith("/ 1.00"), (transform, cells)
    # Scale rows: positive latencies, exact indexes agree with brute force.
    scale = text.split("begin generated: evaluate.scale")[1].split("end generated")[0]
    rows = [line for line in scale.splitlines() if line.startswith("| phash |")]
    assert len(rows) == 2
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[4]) > 0 and float(cells[5]) > 0
        assert cells[7] == "1.00"
    for png in ("recall_per_transform.png", "latency_vs_size.png"):
        assert (folder / "img" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_partial_run_with_bench_args_writes_only_its_own_block(photos: list[Path], tmp_path: Path) -> None:
    """A run of one bench with other arguments adds a block of its own, leaves the header and the
    default block alone, and names its command in the block."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\n"
        + report.block("header", "complete run header")
        + "\n\n"
        + report.block("bench.local_features_recall_bench", "default figures")
        + "\n"
    )
    args = ["--small", "--parts", "benches", "--benches", "local_features_recall_bench"]
    run_evaluate(*args, "--bench-args", "local_features_recall_bench=--every 2", "--doc", str(doc))
    text = doc.read_text()
    assert "complete run header" in text and "default figures" in text
    own = text.split("<!-- begin generated: bench.local_features_recall_bench --every 2 -->")[1].split(
        "<!-- end"
    )[0]
    assert "Command: `python -m bench.local_features_recall_bench --small --every 2`" in own
    assert "| crop, 50% of the area | " in own  # the script's table
    assert "_Produced by `python -m bench.evaluate --small --parts benches" in own
    assert "one photo in 2 queried" in own
