from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def offline_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models dir, downloads off, random weights not allowed."""
    models = tmp_path / "models"
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(models))
    monkeypatch.setenv("AMBIENCE_DOWNLOAD_MODELS", "0")
    monkeypatch.delenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", raising=False)
    return models
