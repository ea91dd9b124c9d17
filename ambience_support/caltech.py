"""caltech101-dev through global_features with the real EfficientNet-Lite0 weights, extracted once per
test session: 2,608 images through the model take minutes on two cores, and two tests need them (the
whitening defaults, the moments' agreement with the classes).

The collection is built the way a user builds one: every image added through the service's own
route. Tests that change it (training) work on a copy of its data dir.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ambience_support.photos import REPO

CALTECH = Path(os.environ.get("AMBIENCE_TEST_CALTECH", REPO.parent / "shared" / "caltech101-dev"))


@dataclass(frozen=True)
class CaltechCollection:
    data_dir: Path
    weights: Path
    paths: list[Path]
    #: The class (folder name) of each image; image id i is ``paths[i]``.
    labels: list[str]

    def settings(self, data_dir: Path | None = None) -> object:
        from services.global_features.service import GlobalFeaturesSettings

        return GlobalFeaturesSettings(
            data_dir=data_dir or self.data_dir, model="tf_efficientnet_lite0", weights=str(self.weights)
        )

    def copy_to(self, folder: Path) -> Path:
        """A private copy of the collection's data dir, for a test that changes it."""
        target = folder / "gf"
        shutil.copytree(self.data_dir, target)
        return target

    def raw_vectors(self) -> np.ndarray:
        """The stored vectors, row i for image id i."""
        from services.registry import open_feature

        with open_feature(
            "global_features", self.data_dir, model="tf_efficientnet_lite0", weights=str(self.weights)
        ) as opened:
            rows = [opened.store.get(i) for i in range(len(self.paths))]
        return np.stack([np.frombuffer(r, np.float32) for r in rows if r is not None])


def build_caltech_collection(folder: Path) -> CaltechCollection:
    if not CALTECH.is_dir():
        pytest.skip(f"caltech101-dev not found at {CALTECH}")
    from services.global_features.service import build_app
    from tools.convert_efficientnet_lite0 import convert

    paths = [p for d in sorted(CALTECH.iterdir()) if d.is_dir() for p in sorted(d.glob("*.jpg"))]
    collection = CaltechCollection(
        folder / "gf", convert(folder / "tf_efficientnet_lite0.pth"), paths, [p.parent.name for p in paths]
    )
    with TestClient(build_app(collection.settings())) as client:
        for i, path in enumerate(paths):
            r = client.post(
                "/calculate_global_features",
                files={"image": ("a.jpg", path.read_bytes())},
                data={"image_id": str(i)},
            )
            assert r.status_code == 200, r.text
    return collection
