"""Micro-batching: one forward pass for every request waiting at the same time."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.items / self.batches if self.batches else 0.0
        return {
            "batches": self.batches,
            "items": self.items,
            "mean_batch": round(mean, 2),
            "largest_batch": self.largest,
        }


@dataclass
class _Job(Generic[T, R]):
    item: T
    future: Future[R] = field(default_factory=Future)


class MicroBatcher(Generic[T, R]):
    """Runs ``fn(items) -> results`` on one worker thread for every item submitted meanwhile.

    Callers (request threads) block in :meth:`submit`. The worker takes every job waiting when it
    becomes free, up to ``max_batch`` (and waits ``max_wait_s`` for more when fewer are there), so a
    lone request runs at once and a burst of requests shares forward passes. Exceptions raised by
    ``fn`` reach every caller of that batch.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch: int = 32,
        max_wait_s: float = 0.0,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job[T, R] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> R:
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue several items (they may share batches with other callers); wait for all."""
        if self._closed:
            raise RuntimeError("the model is shut down")
        jobs: list[_Job[T, R]] = [_Job(item) for item in items]
        for job in jobs:
            self._queue.put(job)
        return [job.future.result() for job in jobs]

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _collect(self, first: _Job[T, R]) -> tuple[list[_Job[T, R]], bool]:
        jobs, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            try:
                results = self._fn([job.item for job in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(jobs)} items"
                    )
            except BaseException as exc:  # hand the failure to the waiting callers
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.items += len(jobs)
            self.stats.largest = max(self.stats.largest, len(jobs))
            for job, result in zip(jobs, results, strict=True):
                job.future.set_result(result)
        while True:  # fail whatever is still queued after close()
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(RuntimeError("the model is shut down"))
