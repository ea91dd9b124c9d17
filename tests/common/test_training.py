"""services/common/features/training.py: one training job at a time, its state, and the HTTP mapping that
global_features and local_features share."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from services.common.features.training import (
    Phase,
    Retraining,
    TrainingBusyError,
    TrainingError,
    TrainingParamsError,
    add_training_route,
)


class Blocking:
    """A job that reports a phase, then waits until released."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, phase: Phase) -> dict[str, Any]:
        phase("training", sample=3)
        self.started.set()
        assert self.release.wait(10)
        return {"trained_on": 3}


def test_one_job_at_a_time_with_its_state() -> None:
    retraining = Retraining()
    assert retraining.status() == {"state": "idle"}
    job = Blocking()
    worker = threading.Thread(target=retraining.run, args=(job,))
    worker.start()
    assert job.started.wait(10)
    assert retraining.running
    assert retraining.status()["state"] == "running"
    assert retraining.status()["phase"] == "training" and retraining.status()["sample"] == 3
    with pytest.raises(TrainingBusyError):
        retraining.run(lambda phase: {})
    job.release.set()
    worker.join(10)
    assert not retraining.running
    assert retraining.status()["state"] == "done" and retraining.status()["trained_on"] == 3


def test_a_failed_job_is_reported_and_frees_the_lock() -> None:
    retraining = Retraining()

    def failing(phase: Phase) -> dict[str, Any]:
        raise TrainingError("too few images")

    with pytest.raises(TrainingError):
        retraining.run(failing)
    assert retraining.status()["state"] == "failed" and retraining.status()["error"] == "too few images"
    assert retraining.run(lambda phase: {"ok": True}) == {"ok": True}


class Body(BaseModel):
    size: int = Field(4, ge=1)


def test_route_maps_busy_and_refusals_to_409_and_bad_parameters_to_422() -> None:
    retraining = Retraining()
    job = Blocking()

    def train(body: Body) -> dict[str, Any]:
        if body.size == 2:
            raise TrainingParamsError("cannot build index: size 2")
        if body.size == 3:
            return retraining.run(lambda phase: (_ for _ in ()).throw(TrainingError("too few")))
        return retraining.run(job) | {"size": body.size}

    app = FastAPI()
    add_training_route(app, "/train", train, Body, "Train.")
    client = TestClient(app)
    assert client.post("/train", json={"size": 0}).status_code == 422  # validation
    assert client.post("/train", json={"size": 2}).status_code == 422
    reply = client.post("/train", json={"size": 3})
    assert reply.status_code == 409 and reply.json()["detail"] == "too few"
    worker = threading.Thread(target=lambda: client.post("/train"))
    worker.start()
    assert job.started.wait(10)
    busy = client.post("/train", json={"size": 5})
    assert busy.status_code == 409 and "already running" in busy.json()["detail"]
    job.release.set()
    worker.join(10)
    assert retraining.status()["state"] == "done"
    job.started.clear()
    job.release.set()
    assert client.post("/train", json={"size": 7}).json() == {"trained_on": 3, "size": 7}
