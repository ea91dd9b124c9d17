"""``ambience import --scheduler``: the extraction runs on a real Dask distributed cluster (a
LocalCluster: a scheduler and two worker processes) while two phash replicas on one PostgreSQL store
serve; both replicas find every imported image. Workers read the shared path, or get the bytes
(``--send-bytes``); a second run resumes, and a broken file is reported as in a local import.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ambience.importer import _WORKER_FEATURES, FAILURES_CSV, IDS_CSV, _feature_key, _process_chunk
from ambience_support.images import encode, synthetic_image
from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess
from ambience_support.replicas import PHASH, found, generations, picture, replica, wait_until
from ambience_support.tiny_models import TINY_IMAGE_TEXT
from services.image_text.service import ImageTextFeature
from services.image_text.settings import ImageTextSettings

distributed = pytest.importorskip("distributed", reason="needs dask distributed (the scale extra)")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # Real scheduler and worker processes; the workers inherit PYTHONPATH, so they import this code.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def run_import(folder: Path, data_dir: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AMBIENCE_PG_DSN": dsn,
        "AMBIENCE_PHASH_STORE": "postgres",
        "AMBIENCE_PHASH_DATA_DIR": str(data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "ambience", "import", "phash", str(folder), "--no-progress", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_pictures(folder: Path, seeds: range) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (folder / f"p{seed:03d}.jpg").write_bytes(picture(seed, PHASH))


def seed_ids(data_dir: Path) -> dict[int, int]:
    """seed -> the image id the import gave its file."""
    with (data_dir / IDS_CSV).open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    stems = [(Path(path).stem, int(image_id)) for image_id, path in rows]
    return {int(stem[1:]): image_id for stem, image_id in stems if stem.startswith("p")}


def all_found(replicas: list[ServiceProcess], ids: dict[int, int], client: httpx.Client) -> None:
    written, _ = generations(replicas[0].url, client)
    for r in replicas:
        wait_until(lambda r=r: generations(r.url, client)[1] >= written, timeout=5)
        for seed, image_id in ids.items():
            assert found(r.url, PHASH, seed, image_id, client), f"{image_id} not found through {r.url}"


def test_import_on_a_dask_cluster_is_found_by_every_replica(
    scheduler: str, tmp_path: Path, pg_dsn: str
) -> None:
    folder = tmp_path / "photos"
    write_pictures(folder, range(12))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    importer_dir = tmp_path / "importer" / "phash"
    a = replica(PHASH, tmp_path / "a" / "phash", pg_dsn).start()
    b = replica(PHASH, tmp_path / "b" / "phash", pg_dsn).start()
    try:
        first = run_import(folder, importer_dir, pg_dsn, "--scheduler", scheduler)
        assert first.returncode == 1, first.stderr  # the broken file
        assert "on the Dask cluster" in first.stderr and "added                 12" in first.stderr
        with (importer_dir / FAILURES_CSV).open(newline="") as f:
            failures = list(csv.DictReader(f))
        assert [Path(row["path"]).name for row in failures] == ["broken.jpg"]
        assert failures[0]["reason"] == "bad image", failures
        with httpx.Client(timeout=60) as client:
            all_found([a, b], seed_ids(importer_dir), client)

            # More photos, the bytes sent from here: the stored ones are skipped, the new ones added.
            write_pictures(folder, range(12, 18))
            second = run_import(folder, importer_dir, pg_dsn, "--scheduler", scheduler, "--send-bytes")
            assert second.returncode == 1, second.stderr
            assert "already stored        12" in second.stderr, second.stderr
            assert "added                  6" in second.stderr, second.stderr
            ids = seed_ids(importer_dir)
            assert len(ids) == 18 and len(set(ids.values())) == 18
            all_found([a, b], ids, client)
            assert client.get(a.url + "/stats").json()["count"] == 18
    finally:
        a.stop()
        b.stop()


def test_an_unreachable_scheduler_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    folder = tmp_path / "photos"
    write_pictures(folder, range(1))
    address = "tcp://127.0.0.1:9"  # nothing listens: refused after the given time, not the default 20 s
    proc = run_import(
        folder, tmp_path / "importer" / "phash", pg_dsn, "--scheduler", address, "--scheduler-timeout", "2"
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr


def test_send_bytes_without_a_scheduler_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    folder = tmp_path / "photos"
    write_pictures(folder, range(1))
    proc = run_import(folder, tmp_path / "importer" / "phash", pg_dsn, "--send-bytes")
    assert proc.returncode == 3, proc.stderr
    assert "--send-bytes needs --scheduler" in proc.stderr


def test_cluster_workers_run_the_model_of_a_model_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a cluster worker runs for a chunk of a model service: decoding and the model, returning
    the stored bytes (a local import's workers only decode); a bad file is reported, the rest stored."""
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    settings = ImageTextSettings(data_dir=tmp_path / "it", **TINY_IMAGE_TEXT)
    images = [encode(synthetic_image(seed)) for seed in range(3)]
    chunk = [
        (1, "a.jpg", images[0]),
        (2, "bad.jpg", b"not an image"),
        (3, "c.jpg", images[1]),
        (4, "d.jpg", images[2]),
    ]
    outcomes = _process_chunk(ImageTextFeature, settings, True, chunk, extract_batched=True)
    worker = _WORKER_FEATURES.pop(_feature_key(ImageTextFeature, settings))
    try:
        by_id = {image_id: (value, err) for image_id, _, value, err in outcomes}
        assert sorted(by_id) == [1, 2, 3, 4]
        assert by_id[2][0] is None and by_id[2][1] is not None and by_id[2][1][0] == "bad image"
        for image_id, data in ((1, images[0]), (3, images[1]), (4, images[2])):
            value, err = by_id[image_id]
            assert err is None and isinstance(value, bytes)
            expected = np.frombuffer(worker.extract(data), np.float32)
            assert np.allclose(np.frombuffer(value, np.float32), expected, atol=1e-5)
    finally:
        worker.close()
