"""``ambience models fetch`` / ``list`` against a local HTTP server (no internet): progress, resume
after interruption (a truncated .part, a dropped connection, a killed process), digests refused
when they do not match, idempotent second run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ambience.cli import main
from ambience_support import fixture_service
from ambience_support.photos import REPO
from ambience_support.weights_server import WeightsServer
from services.common.models.fetch import (
    DigestMismatchError,
    DownloadError,
    digest_from_url,
    download,
    part_path,
)
from services.registry import SERVICES


def blob(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WEIGHTS = blob(1, 700_000)
LABELS = b"\n".join(f"/a/category_{i} {i}".encode() for i in range(365)) + b"\n"


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    with WeightsServer(files={"model.pth": WEIGHTS, "labels.txt": LABELS}) as srv:
        yield srv


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(SERVICES, fixture_service.NAME, fixture_service.INFO)
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def write_manifest(path: Path, entries: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    path.write_text(json.dumps(entries))
    monkeypatch.setenv("AMBIENCE_TEST_WEIGHTS_MANIFEST", str(path))


def standard_manifest(server: WeightsServer, models_dir: Path, weights_sha: str | None = None) -> list[dict]:
    return [
        {
            "description": "fixture weights",
            "target": str(models_dir / "fixture_model" / "model.pth"),
            "url": server.url("model.pth"),
            "sha256": weights_sha if weights_sha is not None else sha(WEIGHTS),
        },
        # no digest known: only the size the server announces is checked
        {
            "description": "fixture labels",
            "target": str(models_dir / "fixture_model" / "labels.txt"),
            "url": server.url("labels.txt"),
        },
    ]


@pytest.fixture
def weights(server: WeightsServer, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The standard manifest in force; where its weights file goes (folder made, file absent)."""
    write_manifest(tmp_path / "manifest.json", standard_manifest(server, models_dir), monkeypatch)
    path = models_dir / "fixture_model" / "model.pth"
    path.parent.mkdir(parents=True)
    return path


def fetch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", "fetch", fixture_service.NAME, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fetch_downloads_verifies_shows_progress_and_is_idempotent(
    server: WeightsServer, weights: Path, capsys
) -> None:
    labels = weights.parent / "labels.txt"

    assert main(["models", "list", fixture_service.NAME]) == 1
    listing = capsys.readouterr().out
    assert listing.count("missing") == 2

    code, out, err = fetch(capsys)
    assert code == 0, err
    assert weights.read_bytes() == WEIGHTS
    assert labels.read_bytes() == LABELS
    assert not part_path(weights).exists() and not part_path(labels).exists()
    # where each file went, with its digest
    assert f"downloaded fixture weights -> {weights.resolve()}" in out
    assert f"sha256 {sha(WEIGHTS)[:16]}" in out
    assert f"downloaded fixture labels -> {labels.resolve()}" in out
    # tqdm progress bars on stderr, one per file, finished
    assert "fixture_model/model.pth" in err and "fixture_model/labels.txt" in err
    assert "100%" in err
    assert len(server.log) == 2

    # second run: nothing downloaded, files reported present
    code, out, err = fetch(capsys)
    assert code == 0
    assert len(server.log) == 2
    assert out.count("present") == 2 and "downloaded" not in out

    assert main(["models", "list", fixture_service.NAME]) == 0
    listing = capsys.readouterr().out
    assert listing.count("present") == 2 and "missing" not in listing


def test_resumes_a_truncated_part_file_with_a_range_request(
    server: WeightsServer, weights: Path, capsys
) -> None:
    kept = 300_000
    part_path(weights).write_bytes(WEIGHTS[:kept])

    assert main(["models", "list", fixture_service.NAME]) == 1
    assert "partial" in capsys.readouterr().out

    code, _out, err = fetch(capsys)
    assert code == 0, err
    assert weights.read_bytes() == WEIGHTS
    (req,) = server.requests_for("model.pth")
    assert req.range == f"bytes={kept}-"
    assert req.status == 206
    assert req.sent == len(WEIGHTS) - kept


def test_dropped_connection_is_resumed_in_the_same_run(server: WeightsServer, weights: Path, capsys) -> None:
    server.drop_after["model.pth"] = 200_000
    code, _out, err = fetch(capsys)
    assert code == 0, err
    assert weights.read_bytes() == WEIGHTS
    first, second = server.requests_for("model.pth")
    assert first.range is None and first.sent == 200_000
    assert second.range == "bytes=200000-" and second.sent == len(WEIGHTS) - 200_000


def test_killed_download_resumes_on_the_next_run(
    server: WeightsServer, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    big = blob(7, 3_000_000)
    server.files["big.bin"] = big
    server.chunk_delay = 0.01  # ~1.6 MB/s: the download takes ~2 s, time enough to kill it
    target = models_dir / "fixture_model" / "big.bin"
    manifest = [
        {"description": "big", "target": str(target), "url": server.url("big.bin"), "sha256": sha(big)}
    ]
    write_manifest(tmp_path / "manifest.json", manifest, monkeypatch)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ambience_support.fixture_service", "models", "fetch", fixture_service.NAME]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = part_path(target)
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 300_000):
        assert proc.poll() is None, "the fetch finished before it could be killed"
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not target.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(big)

    server.chunk_delay = 0.0
    code, _out, err = fetch(capsys)
    assert code == 0, err
    assert target.read_bytes() == big
    # (the killed request may be logged last: its handler notices the dead client late)
    (resumed,) = [r for r in server.requests_for("big.bin") if r.range]
    assert resumed.range == f"bytes={kept}-"
    assert resumed.sent == len(big) - kept


def test_digest_mismatch_is_refused_and_nothing_is_installed(
    server: WeightsServer, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    wrong = sha(b"some other file")
    write_manifest(tmp_path / "manifest.json", standard_manifest(server, models_dir, wrong), monkeypatch)
    weights = models_dir / "fixture_model" / "model.pth"

    code, out, err = fetch(capsys)
    assert code != 0
    assert f"does not match the expected sha256 {wrong}" in err
    assert "not installed" in err
    assert "FAILED fixture weights" in err
    assert not weights.exists() and not part_path(weights).exists()
    # the other file of the service is still fetched
    assert (models_dir / "fixture_model" / "labels.txt").read_bytes() == LABELS
    assert "downloaded fixture labels" in out

    assert main(["models", "list", fixture_service.NAME]) == 1
    assert "missing  fixture weights" in capsys.readouterr().out


def test_a_file_already_present_with_the_wrong_digest_is_reported(weights: Path, capsys) -> None:
    weights.write_bytes(WEIGHTS[:-1] + b"\x00")  # corrupted on disk
    code, _out, err = fetch(capsys)
    assert code != 0
    assert "does not have the expected sha256" in err
    assert main(["models", "list", fixture_service.NAME]) == 1
    assert "CORRUPT" in capsys.readouterr().out


# -- the downloader itself ----------------------------------------------------------------------------


def test_server_that_ignores_ranges_restarts_from_zero(server: WeightsServer, tmp_path: Path) -> None:
    target = tmp_path / "model.pth"
    part_path(target).write_bytes(b"\xff" * 1000)  # not even the right bytes: must not be kept
    server.ignore_range.add("model.pth")
    got = download(server.url("model.pth"), target, progress=False)
    assert target.read_bytes() == WEIGHTS
    assert got.resumed_from == 0 and got.transferred == len(WEIGHTS)


def test_complete_part_file_is_verified_and_installed(server: WeightsServer, tmp_path: Path) -> None:
    target = tmp_path / "model.pth"
    part_path(target).write_bytes(WEIGHTS)  # killed after the last byte, before the rename
    got = download(server.url("model.pth"), target, sha256=sha(WEIGHTS), progress=False)
    assert target.read_bytes() == WEIGHTS and got.transferred == 0
    (req,) = server.requests_for("model.pth")
    assert req.range == f"bytes={len(WEIGHTS)}-" and req.status == 416


def test_hub_announced_digest_is_checked(server: WeightsServer, tmp_path: Path) -> None:
    ok = download(server.hub_url("model.pth"), tmp_path / "a.pth", progress=False)
    assert ok.sha256 == sha(WEIGHTS)
    with pytest.raises(DigestMismatchError, match="the hub announces"):
        download(server.hub_url("model.pth", sha(b"x")), tmp_path / "b.pth", progress=False)
    assert not (tmp_path / "b.pth").exists() and not part_path(tmp_path / "b.pth").exists()


def test_digest_named_in_the_url_is_checked(server: WeightsServer, tmp_path: Path) -> None:
    # torch hub file names carry a sha256 prefix; OpenAI CLIP URLs the full digest as a folder
    assert digest_from_url("https://x/y/tf_efficientnet_lite0-0aa007d2.pth") == "0aa007d2"
    assert digest_from_url(f"https://x/clip/models/{'a' * 64}/ViT-B-16.pt") == "a" * 64
    assert digest_from_url("https://huggingface.co/org/repo/resolve/main/model.safetensors") == ""
    server.files[f"model-{sha(WEIGHTS)[:8]}.pth"] = WEIGHTS
    server.files["model-deadbeef.pth"] = WEIGHTS
    download(server.url(f"model-{sha(WEIGHTS)[:8]}.pth"), tmp_path / "good.pth", progress=False)
    with pytest.raises(DigestMismatchError, match="named in the URL"):
        download(server.url("model-deadbeef.pth"), tmp_path / "bad.pth", progress=False)


def test_missing_file_and_unreachable_server_are_clear_errors(server: WeightsServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("nope.bin"), tmp_path / "nope.bin", progress=False)
    with pytest.raises(DownloadError, match="interrupted"):
        download("http://127.0.0.1:9/x.bin", tmp_path / "x.bin", progress=False, retries=0, timeout=2)


def test_hub_tags_of_real_services_map_to_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """timm / open_clip hub tags resolve to concrete files under the models dir (no download)."""
    pytest.importorskip("timm")
    pytest.importorskip("open_clip")
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path))
    names = [n for n in ("global_features", "image_text") if n in SERVICES]
    assert main(["models", "list", *names]) == 1
    out = capsys.readouterr().out
    for name in names:
        assert f"{name}:" in out
        assert f"-> {tmp_path}/{name}/" in out
    assert main(["models", "fetch", "phash"]) == 2
    assert "not a model service" in capsys.readouterr().err
