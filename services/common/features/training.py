"""Retraining a service's index on its stored data: one job at a time, its progress in /stats.

A service that learns from what it stores (global_features: PCA whitening; local_features: the
OPQ/IVF/PQ index) owns one :class:`Retraining`. ``run(job)`` takes the lock without waiting (a
second request while one runs is :class:`TrainingBusyError`, a 409), records the state
(``idle`` / ``running`` with its ``phase`` / ``done`` with the result / ``failed`` with the
error) and releases the lock however the job ends. :func:`add_training_route` exposes it over
HTTP with the same error mapping for every service. Searches keep using the old index meanwhile
(``Collection.relayout`` swaps the rebuilt one in).
"""

# No "from __future__ import annotations": the route below annotates its body with a class known
# only at run time, which FastAPI must see as a class, not as a string it cannot resolve.

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from services.common.schemas import ERROR_RESPONSES

BodyT = TypeVar("BodyT", bound=BaseModel)


class TrainingError(Exception):
    """Training cannot run on this collection now (too few stored items, ...): a 409."""


class TrainingBusyError(TrainingError):
    """Training is already running: a 409."""


class TrainingParamsError(ValueError):
    """The request asks for something that cannot be built (a malformed FAISS factory): a 422."""


class Phase(Protocol):
    def __call__(self, name: str, **details: Any) -> None: ...


class Retraining:
    """The one training job of a service: lock, state and progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"state": "idle"}

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def status(self) -> dict[str, Any]:
        """For /stats: ``{"state": "idle" | "running" | "done" | "failed", ...}``."""
        return dict(self._status)

    def phase(self, name: str, **details: Any) -> None:
        """Progress of the running job (shown in /stats while it runs)."""
        self._status.update(phase=name, **details)

    def run(self, job: Callable[[Phase], dict[str, Any]]) -> dict[str, Any]:
        """Run ``job(phase)`` unless a job runs already; its result is kept in the status."""
        if not self._lock.acquire(blocking=False):
            raise TrainingBusyError("training is already running")
        try:
            self._status = {"state": "running", "started_at": time.time()}
            result = job(self.phase)
            self._status = {"state": "done", "finished_at": time.time(), **result}
            return result
        except Exception as exc:
            self._status = {"state": "failed", "error": str(exc), "finished_at": time.time()}
            raise
        finally:
            self._lock.release()


def add_training_route(
    app: FastAPI, path: str, train: Callable[[BodyT], dict[str, Any]], body_model: type[BodyT], summary: str
) -> None:
    """``POST path`` (optional JSON body) -> ``train(body)`` in the thread pool; 409 while training
    runs or when the collection cannot be trained, 422 for parameters that cannot be built."""

    async def route(body: Annotated[body_model | None, Body()] = None) -> dict[str, Any]:  # type: ignore[valid-type]
        try:
            return await run_in_threadpool(train, body if body is not None else body_model())
        except TrainingError as exc:
            raise HTTPException(409, str(exc)) from None
        except TrainingParamsError as exc:
            raise HTTPException(422, str(exc)) from None

    route.__doc__ = summary
    app.post(path, responses=ERROR_RESPONSES, summary=summary)(route)
