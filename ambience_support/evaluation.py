"""``python -m bench.evaluate`` as the tests run it: on the shared photos, into a given report, and
the report's generated blocks read back (tests/bench)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ambience_support.photos import PHOTOS, PHOTOS_FULL, REPO

#: The smallest evaluation that still writes every section and runs every bench (each in its own
#: ``--small`` mode): four photos, the two transforms the smoke test checks, two small collection
#: sizes timed twice; four benches at a time (their figures only show that they run, and most of a
#: smoke run is waiting on processes and databases starting).
SMOKE_ARGS = (
    "--small",
    "--max-photos",
    "4",
    "--transforms",
    "jpeg_q20,mirror",
    "--sizes",
    "300,1000",
    "--repeats",
    "2",
    "--bench-jobs",
    "4",
)


def run_evaluate(*args: str) -> None:
    """``python -m bench.evaluate ARGS`` on the real photos, as a user runs it (benches extract
    afresh: no cache of an earlier run is read)."""
    env = {k: v for k, v in os.environ.items() if k != "AMBIENCE_BENCH_CACHE"}
    env |= {"AMBIENCE_TEST_PHOTOS": str(PHOTOS), "AMBIENCE_TEST_PHOTOS_FULL": str(PHOTOS_FULL)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.evaluate", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def block(report: str, key: str) -> str:
    """The text of the report's generated block ``key`` (between its begin and end markers)."""
    begin = f"<!-- begin generated: {key} -->"
    assert begin in report, f"no block {key!r} in the report"
    return report.split(begin, 1)[1].split("<!-- end generated:", 1)[0]


@dataclass(frozen=True)
class SmallEvaluation:
    """A smoke run's report (``doc``, its plots in ``doc.parent / "img"``) and its text."""

    doc: Path
    text: str
