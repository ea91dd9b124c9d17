"""The evaluation command: its report, the runs it makes of the harnesses' parts, and a small run end to
end (real stack, real photos) into a temp report."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from ambience_support.evaluation import block, run_bench_module, run_evaluate
from bench.evaluate import benches, report
from bench.harness import parts_of, section, split_sections

#: Left out of day-to-day runs (pytest -m "not slow"): the benches' smallest runs.
pytestmark = pytest.mark.slow


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
    header = report.header("python -m bench.evaluate", 60)
    assert re.search(r"Machine: .+, \d+ cores", header) and "faiss-cpu" in header


def test_a_harness_is_run_once_per_part_and_a_section_is_a_block_of_its_own() -> None:
    runs = benches.runs("copy_recall_bench")
    assert [r.part for r in runs] == ["gateway", "local_features", "global_features"]
    assert runs[0].key([]) == "bench.copy_recall_bench.gateway"
    assert runs[0].key(["--every", "2"], "fusion") == "bench.copy_recall_bench.fusion --every 2"
    (whole,) = benches.runs("gateway_bench")
    assert whole == benches.Run("gateway_bench", None, benches.title("gateway_bench"))
    text = "recall table\n\n" + section("fusion", "Fusion settings") + "\nfusion table\n"
    assert split_sections(text, "", "Recall") == [
        ("", "Recall", "recall table"),
        ("fusion", "Fusion settings", "fusion table"),
    ]


def test_small_run_writes_the_blocks_of_its_runs_and_leaves_the_others(
    photos: list[Path], tmp_path: Path
) -> None:
    """The retrieval and scale parts and one part with arguments of its own, at their smallest: each
    writes its blocks (the gateway part two), plots beside the report, the rest stays as it was."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\n"
        + report.block("header", "complete run header")
        + "\n\n"
        + report.block("bench.copy_recall_bench.local_features", "default figures")
        + "\n"
    )
    run_evaluate(
        "--small",
        "--benches",
        "copy_recall_bench.gateway,scale_bench.services,copy_recall_bench.local_features",
        "--bench-args",
        "copy_recall_bench.local_features=--every 2",
        "--doc",
        str(doc),
    )
    text = doc.read_text()
    assert "complete run header" in text and "default figures" in text  # a partial run
    # Plausible recall: the fused ranking finds every mirrored and JPEG-compressed copy among 8.
    retrieval = block(text, "bench.copy_recall_bench.gateway")
    assert "Command: `python -m bench.copy_recall_bench --small --parts gateway` (" in retrieval
    header = next(line for line in retrieval.splitlines() if line.startswith("| transform"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for transform in ("mirror", "jpeg_q20"):
        row = next(line for line in retrieval.splitlines() if line.startswith(f"| {transform} "))
        cells = dict(zip(columns, [c.strip() for c in row.strip("|").split("|")], strict=True))
        assert cells["unified_res"] == "1.00 / 1.00", (transform, cells)
        assert cells["phash"] == "1.00 / 1.00", (transform, cells)
        if importlib.util.find_spec("pdqhash"):
            assert cells["PDQ (256 bits)"].endswith("/ 1.00"), (transform, cells)
    assert "![recall@1 per transform](img/recall_per_transform.png)" in retrieval
    assert "candidate settings scored" in block(text, "bench.copy_recall_bench.fusion")
    # Scale rows: positive latencies, exact indexes agree with brute force.
    scale = block(text, "bench.scale_bench.services")
    rows = [line for line in scale.splitlines() if line.startswith("| phash |")]
    assert len(rows) == 2
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[4]) > 0 and float(cells[5]) > 0
        assert cells[7] == "1.00"
    for png in ("recall_per_transform.png", "latency_vs_size.png"):
        assert (tmp_path / "img" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The part with arguments of its own: a block of its own, naming its command and the run's.
    own = block(text, "bench.copy_recall_bench.local_features --every 2")
    assert "Command: `python -m bench.copy_recall_bench --small --parts local_features --every 2`" in own
    assert "| crop, 50% of the area | " in own and "one photo in 2 queried" in own
    assert "_Produced by `python -m bench.evaluate --small --benches" in own


@pytest.mark.parametrize(
    ("harness", "parts"),
    [
        ("model_speed_bench", "throughput,choices,over_http,runtimes,services,serving"),
        ("scale_bench", "thresholds,compressed,pgvector"),
        ("copy_recall_bench", "global_features"),
    ],
)
def test_harness_parts_run_at_their_smallest(photos: list[Path], harness: str, parts: str) -> None:
    """The parts the run above leaves out, run alone as a user runs them: each under its heading
    (one part alone is printed bare, as the evaluation writes it into its block)."""
    done = run_bench_module(f"bench.{harness}", "--small", "--parts", parts)
    titles = parts_of(harness)
    assert titles is not None
    headings = [line for line in done.stdout.splitlines() if line.startswith("## ")]
    names = parts.split(",")
    assert headings == ([f"## {titles[part]}" for part in names] if len(names) > 1 else [])
    assert "Not measured" not in done.stdout and "| " in done.stdout
