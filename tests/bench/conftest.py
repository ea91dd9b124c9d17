"""The evaluation's smoke run, once per session (ambience_support.evaluation.SMOKE_ARGS): the report
it writes is read by the tests of the report's sections and of the benches' blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambience_support.evaluation import SMOKE_ARGS, SmallEvaluation, run_evaluate


@pytest.fixture(scope="session")
def small_evaluation(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> SmallEvaluation:
    doc = tmp_path_factory.mktemp("evaluation") / "benchmarks.md"
    run_evaluate(*SMOKE_ARGS, "--doc", str(doc))
    return SmallEvaluation(doc, doc.read_text())
