"""global_features under runtime onnx (auto's choice on CPU): served from an export made once by a
child process, with no torch in the serving process (read from /proc/PID/maps of the real service
process), the same vectors as eager on real photos, and export failures refused at start-up naming
the cause."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ambience_support.contract import add_synthetic_then_search
from ambience_support.offline import offline_models
from ambience_support.photos import load_rgb
from ambience_support.processes import ServiceProcess, running_service
from services.common.errors import StartupError
from services.common.models.onnx_tower import ExportPlan, OnnxImageSession
from services.global_features.service import EXPORT_BUILDER, EXPORT_SETTINGS, GlobalFeature
from services.global_features.settings import GlobalFeaturesSettings

#: Left out of day-to-day runs (pytest -m "not slow"): ONNX exports of real models.
pytestmark = pytest.mark.slow

MODEL = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from tools.convert_efficientnet_lite0 import convert

    folder = tmp_path_factory.mktemp("onnx-models")
    convert(folder / "tf_efficientnet_lite0.pth")
    with offline_models(folder):  # the in-process sessions below read the same cache
        yield folder


def settings(models: Path, data_dir: Path, **overrides: object) -> GlobalFeaturesSettings:
    values = {"model": MODEL, "weights": str(models / "tf_efficientnet_lite0.pth"), "runtime": "onnx"}
    return GlobalFeaturesSettings(data_dir=data_dir, **{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def service(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_ONNX_DIR": str(models / "onnx"),
        "AMBIENCE_GLOBAL_FEATURES_MODEL": MODEL,
        "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": str(models / "tf_efficientnet_lite0.pth"),
        # no RUNTIME: auto means onnx on the CPU
    }
    data_dir = tmp_path_factory.mktemp("gf-onnx") / "data"
    with running_service(
        "services.global_features", "AMBIENCE_GLOBAL_FEATURES_", data_dir, extra_env=env
    ) as svc:
        svc.wait_healthy(timeout=240)
        yield svc


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as fh:
        return {line.split()[-1] for line in fh if len(line.split()) >= 6}


def test_the_serving_process_never_loads_torch(service: ServiceProcess, models: Path) -> None:
    with httpx.Client(base_url=service.url, timeout=60) as client:
        health = client.get("/health").json()
        assert health["runtime"] == "onnx" and health["model"] == MODEL and health["dim"] == 1280
        search = "global_features_get_similar_images_by_image_buffer"
        hits = add_synthetic_then_search(client, "global_features", search, 4, 2)
        assert hits[0]["image_id"] == 3
    assert service.proc is not None
    libraries = mapped_files(service.proc.pid)
    assert any("onnxruntime" in path for path in libraries)
    torch_libraries = sorted(p for p in libraries if "libtorch" in p or "/torch/" in p or "libc10" in p)
    assert not torch_libraries, torch_libraries
    assert len(list((models / "onnx" / "global_features").glob("*.onnx"))) == 1


def test_onnx_vectors_match_eager_on_real_photos(
    service: ServiceProcess, models: Path, photos: list[Path], tmp_path: Path
) -> None:
    from services.global_features.model import TimmSession

    s = settings(models, tmp_path)
    onnx = OnnxImageSession(s, EXPORT_BUILDER, EXPORT_SETTINGS, 1)  # the service's export, not a new one
    assert ExportPlan.of(s, EXPORT_BUILDER, EXPORT_SETTINGS).onnx.stat().st_mtime_ns == (
        next((models / "onnx" / "global_features").glob("*.onnx")).stat().st_mtime_ns
    )
    eager = TimmSession(MODEL, onnx.weights, __import__("torch").device("cpu"), "eager")
    batch = [load_rgb(path, max_side=800) for path in photos[:16]]
    pixels = np.stack([onnx.preprocess(image) for image in batch])
    assert np.array_equal(pixels, np.stack([eager.preprocess(image) for image in batch]))
    cosines = np.sum(onnx.embed_images(pixels) * eager.embed_images(pixels), axis=1)
    assert cosines.min() >= 0.999, cosines


def test_a_changed_weights_file_makes_the_export_stale(
    service: ServiceProcess, models: Path, tmp_path: Path
) -> None:
    s = settings(models, tmp_path)
    assert ExportPlan.of(s, EXPORT_BUILDER, EXPORT_SETTINGS).current() is not None
    weights = models / "tf_efficientnet_lite0.pth"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert ExportPlan.of(s, EXPORT_BUILDER, EXPORT_SETTINGS).current() is None
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_failed_export_names_the_cause_and_the_fix(models: Path, tmp_path: Path) -> None:
    feature = GlobalFeature(settings(models, tmp_path, pooling="token"))
    with pytest.raises(StartupError, match=r"pooling 'token' needs a ViT.*RUNTIME=eager"):
        feature.load_session()


def test_without_onnxruntime_the_service_names_the_package_and_the_fix(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: import fails
    feature = GlobalFeature(settings(models, tmp_path))
    with pytest.raises(StartupError, match=r"onnxruntime package.*AMBIENCE_GLOBAL_FEATURES_RUNTIME=eager"):
        feature.load_session()
