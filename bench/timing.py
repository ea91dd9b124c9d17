"""Small timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np


def percentiles_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    arr = np.array(samples)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "n": repeats}


def percentile_ms(seconds: list[float], q: float) -> float:
    """The ``q``-th percentile of timings in seconds, in ms."""
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def one_at_a_time(
    search: Callable[[np.ndarray], np.ndarray],
    queries: np.ndarray,
    max_queries: int | None = None,
    max_seconds: float = float("inf"),
) -> tuple[np.ndarray, list[float]]:
    """Each query row searched alone, as a request does: the ids each search returned (one row per
    query timed) and the seconds each took. Stops after ``max_queries`` or, once 5 are done, when
    ``max_seconds`` have passed."""
    found, seconds = [], []
    started = time.perf_counter()
    for q in queries[:max_queries]:
        t0 = time.perf_counter()
        found.append(search(q[None]))
        seconds.append(time.perf_counter() - t0)
        if len(seconds) >= 5 and time.perf_counter() - started > max_seconds:
            break
    return np.stack(found), seconds


def machine() -> str:
    import os

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}"
    )


async def timed_ms(step: Callable[[], Awaitable[Any]]) -> float:
    """Milliseconds that awaiting ``step()`` takes."""
    started = time.perf_counter()
    await step()
    return (time.perf_counter() - started) * 1000


def p50_p95(samples: list[float], digits: int = 1) -> str:
    """``p50 X, p95 Y`` of ``samples`` with ``digits`` decimals."""
    p50, p95 = np.percentile(samples, [50, 95])
    return f"p50 {p50:.{digits}f}, p95 {p95:.{digits}f}"
