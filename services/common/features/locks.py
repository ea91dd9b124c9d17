"""A small readers-writer lock: many concurrent searches, one writer at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """Readers-writer lock.

    ``prefer_writers``: a waiting writer blocks new readers, so a steady stream of readers cannot
    starve it. A thread that already holds the read side may take it again while a writer waits
    (reads nest, e.g. a read transaction opened inside another); blocking it there would deadlock.
    """

    def __init__(self, prefer_writers: bool = True) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._prefer_writers = prefer_writers
        self._held = threading.local()  # per thread: how many read sides it holds

    def _held_reads(self) -> int:
        return getattr(self._held, "reads", 0)

    @contextmanager
    def read(self) -> Iterator[None]:
        nested = self._held_reads() > 0
        with self._cond:
            while self._writer or (self._prefer_writers and self._writers_waiting and not nested):
                self._cond.wait()
            self._readers += 1
        self._held.reads = self._held_reads() + 1
        try:
            yield
        finally:
            self._held.reads -= 1
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
