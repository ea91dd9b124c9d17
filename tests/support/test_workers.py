"""The suite's worker processes: how many ``-n auto`` starts, and what they make once per run."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from ambience_support import workers


def test_auto_workers_follow_the_cap_the_cpus_and_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_usable_cpus", lambda: 16)
    monkeypatch.setattr(workers, "_memory_gib", lambda: 64.0)
    monkeypatch.delenv("AMBIENCE_TEST_WORKERS", raising=False)
    assert workers.auto_workers() == workers.DEFAULT_MAX_WORKERS  # 16 cores, 12 workers' memory
    monkeypatch.setenv("AMBIENCE_TEST_WORKERS", "3")
    assert workers.auto_workers() == 3
    monkeypatch.setattr(workers, "_memory_gib", lambda: 11.0)
    assert workers.auto_workers() == 2  # 5 GiB a worker
    monkeypatch.setattr(workers, "_memory_gib", lambda: 2.0)
    assert workers.auto_workers() == 1  # never none
    monkeypatch.setattr(workers, "_memory_gib", lambda: 64.0)
    monkeypatch.setattr(workers, "_usable_cpus", lambda: 2)
    assert workers.auto_workers() == 2


def _make_slowly(folder: Path) -> None:
    with open(folder / "makes", "a") as f:
        f.write("made\n")
    time.sleep(0.5)  # long enough for the other process to reach the lock
    (folder / "content").write_text("whole")


def _read_once_made(folder: str, results: multiprocessing.Queue) -> None:
    made = workers.made_once(Path(folder), _make_slowly)
    results.put((made / "content").read_text())


def test_what_two_workers_need_is_made_once_and_both_read_it_whole(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_read_once_made, args=(str(tmp_path), results)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in processes) == ["whole", "whole"]
    assert (tmp_path / "makes").read_text() == "made\n"


def test_a_make_that_failed_is_made_again_by_the_next(tmp_path: Path) -> None:
    def failing(folder: Path) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        workers.made_once(tmp_path, failing)
    workers.made_once(tmp_path, _make_slowly)
    assert (tmp_path / "content").read_text() == "whole"
