from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ambience_support.contract import StandardRoutesContract
from services.phash.service import PhashSettings, build_app


class TestPhashRoutes(StandardRoutesContract):
    store_route = "phash_features"
    search_route = "phash"

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with TestClient(build_app(PhashSettings(data_dir=tmp_path / "phash"))) as client:
            yield client
