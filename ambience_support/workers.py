"""The suite on several worker processes (pytest-xdist): how many, and what they share.

``python3 -m pytest`` runs on ``-n auto`` workers (pyproject's addopts), each a pytest process of
its own with a whole module at a time (``--dist loadfile``, so a module's fixtures are built once).
:func:`auto_workers` is the count ``auto`` means here: one per CPU this process may use, at most
one per :data:`GIB_PER_WORKER` GiB of memory (a worker holding a model, a stack and a browser peaks
near 5 GiB), at most ``AMBIENCE_TEST_WORKERS`` (default 8: past that, workers mostly wait on the
same disk and PostgreSQL start-ups). ``-n 0`` runs everything in this one process.

What costs seconds to make and is only read afterwards is made once per run, not once per worker:
:func:`run_folder` is a folder every worker of this run sees (the ONNX exports, the Caltech
collection), :func:`made_once` makes its content under a lock the first worker to come takes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: Memory a worker may peak at (the serial suite's peak: 5.4 GB RSS), so ``auto`` never swaps.
GIB_PER_WORKER = 5
DEFAULT_MAX_WORKERS = 8


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float(GIB_PER_WORKER)


def auto_workers() -> int:
    """What ``-n auto`` means for this suite on this machine (at least 1)."""
    limit = int(os.environ.get("AMBIENCE_TEST_WORKERS", DEFAULT_MAX_WORKERS))
    return max(1, min(_usable_cpus(), int(_memory_gib() // GIB_PER_WORKER), limit))


def run_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this run shared by all its workers (one process: a fresh temporary folder)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Workers' basetemps are <run>/popen-gwN: their parent is this run's, and only this run's.
        folder = tmp_path_factory.getbasetemp().parent / name
        folder.mkdir(exist_ok=True)
        return folder
    return tmp_path_factory.mktemp(name)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def made_once(folder: Path, make: Callable[[Path], None]) -> Path:
    """``folder`` with ``make(folder)`` run in it once for the run: the first worker makes it while
    the others wait on the lock, then all read it. A make that failed is tried again by the next."""
    done = folder / ".made"
    with _locked(folder):
        if not done.exists():
            make(folder)
            done.touch()
    return folder
