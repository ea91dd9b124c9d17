from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ambience_support.contract import StandardRoutesContract
from services.color.service import ColorSettings, build_app


class TestColorRoutes(StandardRoutesContract):
    store_route = "color_features"
    search_route = "color"

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with TestClient(build_app(ColorSettings(data_dir=tmp_path / "color"))) as client:
            yield client
