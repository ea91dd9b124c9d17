from __future__ import annotations

import pytest

from tests.helpers import PHOTOS, photo_paths


@pytest.fixture(scope="session")
def photos() -> list:
    paths = photo_paths(PHOTOS)
    if not paths:
        pytest.skip(f"real photographs not found at {PHOTOS}")
    return paths
