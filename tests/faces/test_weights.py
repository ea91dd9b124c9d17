"""The faces service's weights: found in the installed face_recognition_models package (never
downloaded), listed by `ambience models list`, and a clear refusal (exit 2) when they are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ambience_support.photos import REPO
from ambience_support.processes import free_port
from services.common.errors import WeightsMissingError

pytest.importorskip("dlib")

from services.faces import weights
from services.faces.service import FacesFeature
from services.faces.settings import FacesSettings


def ambience(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ambience", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_models_list_shows_the_packaged_weights_as_present() -> None:
    folder = weights.package_models_dir()
    assert folder is not None and folder.name == "models"
    listed = ambience("models", "list", "faces")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.strip().startswith("present")]
    assert len(lines) == 2, listed.stdout
    for name in (weights.SHAPE_PREDICTOR, weights.RESNET):
        assert str(folder / name) in listed.stdout
    assert "68_face_landmarks" not in listed.stdout  # never used: its licence excludes commercial use
    # the CNN detector is listed only when it is the fallback
    with_cnn = ambience("models", "list", "faces", AMBIENCE_FACES_FALLBACK="cnn")
    assert with_cnn.returncode == 0 and weights.CNN_DETECTOR in with_cnn.stdout


def test_missing_weights_are_listed_and_refused(tmp_path: Path) -> None:
    listed = ambience("models", "list", "faces", AMBIENCE_FACES_WEIGHTS_DIR=str(tmp_path))
    missing = [line for line in listed.stdout.splitlines() if line.strip().startswith("missing")]
    assert listed.returncode == 1 and len(missing) == 2, listed.stdout
    feature = FacesFeature(FacesSettings(data_dir=tmp_path / "data", weights_dir=str(tmp_path)))
    with pytest.raises(WeightsMissingError, match="AMBIENCE_FACES_WEIGHTS_DIR"):
        feature.load()
    # the service process exits with 2, which `ambience serve` reads as "unavailable"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AMBIENCE_FACES_WEIGHTS_DIR": str(tmp_path),
        "AMBIENCE_FACES_DATA_DIR": str(tmp_path / "data"),
        "AMBIENCE_FACES_PORT": str(free_port()),
    }
    run = subprocess.run(
        [sys.executable, "-m", "services.faces"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and weights.RESNET in run.stderr


def test_a_weights_folder_of_ones_own_is_used(tmp_path: Path) -> None:
    folder = weights.package_models_dir()
    assert folder is not None
    for name in (weights.SHAPE_PREDICTOR, weights.RESNET):
        (tmp_path / name).symlink_to(folder / name)
    feature = FacesFeature(FacesSettings(data_dir=tmp_path / "data", weights_dir=str(tmp_path)))
    feature.load()
    assert feature.weights_folder == str(tmp_path) and feature.info()["weights"] == "file"
    packaged = FacesFeature(FacesSettings(data_dir=tmp_path / "data2"))
    packaged.load()
    assert feature.weights_digest == packaged.weights_digest  # the same files, the same store metadata
