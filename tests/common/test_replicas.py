"""Replicas of one service on the PostgreSQL store: separate processes with separate data dirs (as
on separate hosts) pointed at one real PostgreSQL serve the same collection.

phash and local_features (RootSIFT) each run as replicas A and B: a write through one is found
through the other within 2 s; kill -9 of a replica during concurrent adds loses no acknowledged
write and it catches up on restart; a PostgreSQL restart during adds answers clear 503s and loses
nothing acknowledged; a replica configured differently is refused.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ambience_support.pg import TestServer
from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess
from ambience_support.replicas import (
    LOCAL,
    PHASH,
    Kind,
    add,
    found,
    generations,
    picture,
    replica,
    wait_until,
)

#: Left out of day-to-day runs (pytest -m "not slow"): service replicas as processes.
pytestmark = pytest.mark.slow


@pytest.fixture(params=[PHASH, LOCAL], ids=lambda k: k.name)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


@pytest.fixture
def replicas(kind: Kind, tmp_path: Path, pg_dsn: str) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    a = replica(kind, tmp_path / "a" / kind.name, pg_dsn).start()
    b = replica(kind, tmp_path / "b" / kind.name, pg_dsn).start()
    yield a, b
    a.stop()
    b.stop()


def test_a_write_through_one_replica_is_found_through_the_other(
    kind: Kind, replicas: tuple[ServiceProcess, ServiceProcess]
) -> None:
    a, b = replicas
    with httpx.Client(timeout=60) as client:
        r = add(a.url, kind, 1, client)
        assert r.status_code == 200, r.text
        # The replication lag is how long B's index takes to apply the write (its /stats generation);
        # a local-features search itself takes about a second on a busy two-core machine.
        written, _ = generations(a.url, client)
        lag = wait_until(lambda: generations(b.url, client)[1] >= written, timeout=2.0)
        assert found(b.url, kind, 1, 1, client)
        r = client.post(b.url + kind.delete, json={"image_id": 1})
        assert r.status_code == 200 and r.json()["deleted"], r.text
        written, _ = generations(b.url, client)
        wait_until(lambda: generations(a.url, client)[1] >= written, timeout=2.0)
        assert not found(a.url, kind, 1, 1, client)
    assert lag < 2.0


def test_kill_9_of_a_replica_during_adds_loses_nothing_acknowledged(
    kind: Kind, replicas: tuple[ServiceProcess, ServiceProcess]
) -> None:
    a, b = replicas
    acked: list[int] = []
    lock = threading.Lock()

    def add_to_a(image_id: int) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                r = add(a.url, kind, image_id, client)
            if r.status_code == 200:
                with lock:
                    acked.append(image_id)
        except httpx.HTTPError:
            pass  # the replica died under this request: not acknowledged

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(add_to_a, i) for i in range(10, 40)]
        wait_until(lambda: len(acked) >= 5, timeout=60)
        a.kill()
        for f in futures:
            f.result()
    assert len(acked) >= 5
    with httpx.Client(timeout=60) as client:
        # B follows the shared log: every acknowledged add is searchable there.
        wait_until(lambda: client.get(b.url + "/stats").json()["count"] >= len(acked), timeout=10)
        for image_id in acked:
            assert found(b.url, kind, image_id, image_id, client), f"{image_id} lost"
        a.start()  # A restarts from its snapshot (or a rebuild) plus the log
        for image_id in acked:
            assert found(a.url, kind, image_id, image_id, client), f"{image_id} missing on A after restart"


def test_postgres_restart_during_adds_answers_503_and_loses_nothing(
    kind: Kind, replicas: tuple[ServiceProcess, ServiceProcess], pg_server: TestServer
) -> None:
    embedded = pg_server.require_embedded()
    a, b = replicas
    acked: list[int] = []
    statuses: list[int] = []
    with httpx.Client(timeout=60) as client:
        for image_id in range(100, 104):
            r = add(a.url, kind, image_id, client)
            assert r.status_code == 200, r.text
            acked.append(image_id)
        embedded.stop()
        try:
            r = add(a.url, kind, 104, client)
            statuses.append(r.status_code)
            assert r.status_code == 503, r.text
            assert "PostgreSQL" in r.json()["detail"] and r.headers.get("retry-after")
            if kind is PHASH:  # searches keep working from the in-memory index
                assert found(b.url, kind, 100, 100, client)
            else:  # verification reads the stored keypoints: a clear 503 until the server is back
                q = client.post(
                    b.url + kind.by_image, files={"image": ("q.jpg", picture(100, kind))}, data={"k": "3"}
                )
                assert q.status_code == 503 and "PostgreSQL" in q.json()["detail"], q.text
        finally:
            embedded.start()
        for image_id in range(104, 108):
            r = add(a.url, kind, image_id, client)
            assert r.status_code == 200, r.text
            acked.append(image_id)
        for image_id in acked:
            wait_until(lambda i=image_id: found(b.url, kind, i, i, client), timeout=5)


def test_a_replica_with_another_configuration_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    first = replica(LOCAL, tmp_path / "a" / "local_features", pg_dsn).start()
    try:
        other = replica(
            LOCAL,
            tmp_path / "b" / "local_features",
            pg_dsn,
            AMBIENCE_LOCAL_FEATURES_DESCRIPTOR="hardnet8",
            AMBIENCE_LOCAL_FEATURES_HARDNET_WEIGHTS="random",
            AMBIENCE_ALLOW_RANDOM_WEIGHTS="1",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "services.local_features"],
            env=other.env,
            cwd=REPO,
            capture_output=True,
            timeout=180,
        )
    finally:
        first.stop()
    assert proc.returncode == 3, proc.stderr.decode()[-2000:]
    assert b"different configuration" in proc.stderr and b"descriptor" in proc.stderr
