"""``python -m bench.evaluate`` as the tests run it: on the shared photos, into a given report, and
the report's generated blocks read back (tests/bench)."""

from __future__ import annotations

import os
import subprocess
import sys

from ambience_support.photos import PHOTOS, PHOTOS_FULL, REPO


def run_bench_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` (a bench or the evaluation) on the real photos, as a user runs it
    (benches extract afresh: no cache of an earlier run is read); asserts it succeeded."""
    env = {k: v for k, v in os.environ.items() if k != "AMBIENCE_BENCH_CACHE"}
    env |= {"AMBIENCE_TEST_PHOTOS": str(PHOTOS), "AMBIENCE_TEST_PHOTOS_FULL": str(PHOTOS_FULL)}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_evaluate(*args: str) -> None:
    """``python -m bench.evaluate ARGS`` (:func:`run_bench_module`)."""
    run_bench_module("bench.evaluate", *args)


def block(report: str, key: str) -> str:
    """The text of the report's generated block ``key`` (between its begin and end markers)."""
    begin = f"<!-- begin generated: {key} -->"
    assert begin in report, f"no block {key!r} in the report"
    return report.split(begin, 1)[1].split("<!-- end generated:", 1)[0]
