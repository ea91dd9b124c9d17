"""caltech101-dev through global_features with the real EfficientNet-Lite0 weights, extracted once per
test run (by the first worker that needs it; the others wait, then read it): two tests need the
collection (the whitening defaults, the moments' agreement with the classes).

The collection is built the way a user fills a service from a folder: ``ambience import``'s batched
path (decoding, then the model on batches of 32, every record through the service's own store), with
the runtime the README gives Lite0 (ONNX Runtime: outputs equal to eager's to 1e-6, half its CPU per
image). Image id i is the i-th file in the import's order. Tests that change the collection
(training) work on a copy of its data dir.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ambience_support.photos import REPO
from ambience_support.workers import made_once

MODEL = "tf_efficientnet_lite0"
WEIGHTS_FILE = "tf_efficientnet_lite0.pth"
CALTECH = Path(os.environ.get("AMBIENCE_TEST_CALTECH", REPO.parent / "shared" / "caltech101-dev"))


@dataclass(frozen=True)
class CaltechCollection:
    data_dir: Path
    weights: Path
    paths: list[Path]
    #: The class (folder name) of each image; image id i is ``paths[i]``.
    labels: list[str]

    def settings(self, data_dir: Path | None = None) -> object:
        from services.global_features.settings import GlobalFeaturesSettings

        return GlobalFeaturesSettings(
            data_dir=data_dir or self.data_dir, model=MODEL, weights=str(self.weights)
        )

    def copy_to(self, folder: Path) -> Path:
        """A private copy of the collection's data dir, for a test that changes it."""
        target = folder / "gf"
        shutil.copytree(self.data_dir, target)
        return target

    def raw_vectors(self) -> np.ndarray:
        """The stored vectors, row i for image id i."""
        from services.registry import open_feature

        with open_feature("global_features", self.data_dir, model=MODEL, weights=str(self.weights)) as opened:
            rows = [opened.store.get(i) for i in range(len(self.paths))]
        return np.stack([np.frombuffer(r, np.float32) for r in rows if r is not None])


def build_caltech_collection(folder: Path) -> CaltechCollection:
    """The collection in ``folder``, imported there once for the run (every worker reads it)."""
    if not CALTECH.is_dir():
        pytest.skip(f"caltech101-dev not found at {CALTECH}")
    from ambience.importer import IDS_CSV

    made_once(folder, _import_caltech)
    data_dir = folder / "gf"
    with (data_dir / IDS_CSV).open(newline="") as f:
        by_id = {int(row[0]): Path(row[1]) for row in csv.reader(f) if row[0].isdigit()}
    paths = [by_id[i] for i in range(len(by_id))]
    return CaltechCollection(data_dir, folder / WEIGHTS_FILE, paths, [p.parent.name for p in paths])


def _import_caltech(folder: Path) -> None:
    from ambience.importer import run_import
    from services.global_features.lite0_weights import convert
    from services.registry import new_feature

    weights = convert(folder / WEIGHTS_FILE)
    data_dir = folder / "gf"
    shutil.rmtree(data_dir, ignore_errors=True)  # what an interrupted import left
    feature = new_feature("global_features", data_dir, model=MODEL, weights=str(weights), runtime="onnx")
    report = run_import(feature, CALTECH, start_id=0, jobs=1, progress=False, out=io.StringIO())
    assert not report.failures and report.added == report.files > 0, report.summary()
