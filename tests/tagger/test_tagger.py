"""Tagger: readable Places365 names, indoor/outdoor vote, CSAIL checkpoint format, service over HTTP."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from ambience_support.bad_uploads import bad_uploads
from ambience_support.images import encode, synthetic_image
from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess
from ambience_support.tiny_models import category_names, write_label_files
from ambience_support.tiny_models import tagger_env as service_env
from services.common.errors import EXIT_WEIGHTS_MISSING, StartupError
from services.registry import required_weights
from services.tagger.descriptor import CHECKPOINT_URL
from services.tagger.places import (
    PlacesLabels,
    PlacesTagger,
    build_resnet50,
    load_places_checkpoint,
    readable_category,
)
from services.tagger.service import TaggerSettings, build_app

#: Left out of day-to-day runs (pytest -m "not slow"): the tagger's network built and exported.
pytestmark = pytest.mark.slow


def readable_names() -> set[str]:
    return {readable_category(name) for name in category_names()}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    write_label_files(models / "tagger")
    return models


# -- names and labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        ("/a/airfield", "airfield"),
        ("/b/bedroom", "bedroom"),
        ("/s/shopfront", "shopfront"),
        ("/f/field/wild", "wild field"),
        ("/s/swimming_pool/indoor", "indoor swimming pool"),
        ("/b/bus_interior", "bus interior"),
    ],
)
def test_readable_category(raw: str, readable: str) -> None:
    assert readable_category(raw) == readable


def test_label_files_are_parsed_and_checked(tmp_path: Path) -> None:
    categories, io_table = write_label_files(tmp_path)
    labels = PlacesLabels.read(categories, io_table)
    assert len(labels) == 365 and labels.names[:4] == ("airfield", "bedroom", "wild field", "shopfront")
    assert labels.outdoor[:3].tolist() == [0, 1, 0]
    io_table.write_text("".join(io_table.read_text().splitlines(keepends=True)[1:]))  # airfield: no IO label
    with pytest.raises(StartupError, match="airfield"):
        PlacesLabels.read(categories, io_table)
    categories.write_text("/a/airfield 0\n/b/bedroom 5\n")
    with pytest.raises(StartupError, match=r"categories_places365\.txt:2"):
        PlacesLabels.read(categories, io_table)


def tagger_with(names: list[str], outdoor: list[int]) -> PlacesTagger:
    labels = PlacesLabels(tuple(names), tuple(map(readable_category, names)), np.array(outdoor, np.float32))
    return PlacesTagger(torch.nn.Identity(), labels, torch.device("cpu"))


def test_tags_best_first_above_threshold_then_indoor_outdoor_by_top10_vote() -> None:
    names = [f"/c/cat_{i}" for i in range(12)]
    # The best category is outdoor, but 6 of the top 10 are indoor: CSAIL's vote says indoor.
    outdoor = [1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    probs = np.array([0.40, 0.30, 0.05, 0.04, 0.04, 0.04, 0.04, 0.03, 0.02, 0.02, 0.01, 0.01], np.float32)
    order = np.random.default_rng(0).permutation(12)  # class order must not matter
    tagger = tagger_with([names[i] for i in order], [outdoor[i] for i in order])
    assert tagger.tags(probs[order], 0.2) == ["cat 0", "cat 1", "indoor"]
    assert tagger.tags(probs[order], 0.35) == ["cat 0", "indoor"]
    assert tagger.tags(probs[order], 0.0, max_tags=3) == ["cat 0", "cat 1", "cat 2", "indoor"]
    flipped = tagger_with([names[i] for i in order], [1 - outdoor[i] for i in order])
    assert flipped.tags(probs[order], 0.99) == ["outdoor"]


def test_tags_have_no_duplicates() -> None:
    tagger = tagger_with(["/b/bar/indoor", "/i/indoor_bar", "/x/other"], [0, 0, 1])
    assert tagger.tags(np.array([0.5, 0.3, 0.2], np.float32), 0.1) == ["indoor bar", "other", "indoor"]


# -- CSAIL checkpoint format ------------------------------------------------------------------------------


def test_csail_checkpoint_loads_strictly(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = build_resnet50().eval()
    path = tmp_path / "resnet50_places365.pth.tar"
    # The structure of CSAIL's file: a DataParallel training checkpoint.
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet50",
            "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()},
            "best_prec1": 54.65,
        },
        path,
    )
    net = build_resnet50()
    load_places_checkpoint(net, path)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(net.eval()(x), reference(x), atol=1e-5)
    # An ImageNet ResNet50 (1000 classes) is refused, not half-loaded.
    wrong = tmp_path / "imagenet.pth"
    torch.save({"state_dict": build_resnet50(1000).state_dict()}, wrong)
    with pytest.raises(StartupError, match="does not fit"):
        load_places_checkpoint(build_resnet50(), wrong)


def test_registry_lists_checkpoint_and_label_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path))
    files = required_weights("tagger")
    assert [f.target.name for f in files] == [
        "resnet50_places365.pth.tar",
        "categories_places365.txt",
        "IO_places365.txt",
    ]
    assert files[0].url == CHECKPOINT_URL and all(f.target.parent == tmp_path / "tagger" for f in files)
    assert all(f.url.startswith(("http://", "https://")) for f in files)
    assert "ambience models fetch tagger" in files[1].fix()


# -- the service ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        "services.tagger", "AMBIENCE_TAGGER_", tmp_path_factory.mktemp("data"), service_env(models_dir)
    )
    svc.start(timeout=120)
    try:
        yield svc
    finally:
        svc.stop()


def post_image(url: str, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(url + "/get_image_tags", files={"image": (name, data)}, timeout=60)


def test_tags_over_http_are_category_names_best_first(server: ServiceProcess, models_dir: Path) -> None:
    data = encode(synthetic_image(7))
    r = post_image(server.url, data)
    assert r.status_code == 200, r.text
    tags = r.json()
    assert len(tags) == 6 and len(set(tags)) == 6
    assert set(tags[:5]) <= readable_names() and tags[5] in ("indoor", "outdoor")
    # The same (seeded) random model in this process ranks the categories: the service agrees.
    probs = local_probabilities(models_dir, data)
    assert tags[:5] == [name for name, _ in local_tagger(models_dir).top_categories(probs, 5)]


def local_tagger(models_dir: Path) -> PlacesTagger:
    folder = models_dir / "tagger"
    labels = PlacesLabels.read(folder / "categories_places365.txt", folder / "IO_places365.txt")
    torch.manual_seed(0)  # services.common.models.weights.RANDOM_SEED: the service's random weights
    return PlacesTagger(build_resnet50(), labels, torch.device("cpu"))


def local_probabilities(models_dir: Path, data: bytes) -> np.ndarray:
    tagger = local_tagger(models_dir)
    return tagger.probabilities(tagger.preprocess(Image.open(io.BytesIO(data)).convert("RGB"))[None])[0]


@pytest.mark.parametrize(("label", "payload", "status"), bad_uploads())
def test_bad_images_are_4xx_and_the_service_stays_up(
    server: ServiceProcess, label: str, payload: bytes, status: int
) -> None:
    r = post_image(server.url, payload)
    assert r.status_code == status, (label, r.text)
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_missing_image_field_is_422(server: ServiceProcess) -> None:
    assert httpx.post(server.url + "/get_image_tags", data={"x": "1"}).status_code == 422


def test_info_routes(server: ServiceProcess) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["weights"] == "random" and health["categories"] == 365
    post_image(server.url, encode(synthetic_image(8, (64, 48)), "PNG"))
    stats = httpx.get(server.url + "/stats").json()
    assert stats["batching"]["items"] >= 1 and stats["model"] == "resnet50_places365"
    metrics = httpx.get(server.url + "/metrics").text
    assert 'ambience_requests_total{route="/get_image_tags",status="200"}' in metrics
    assert "/get_image_tags" in httpx.get(server.url + "/openapi.json").json()["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_default_threshold_keeps_only_confident_scenes(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in service_env(models_dir).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AMBIENCE_TAGGER_THRESHOLD")
    assert TaggerSettings().threshold == 0.2
    data = encode(synthetic_image(9))
    with TestClient(build_app()) as client:
        r = client.post("/get_image_tags", files={"image": ("a.jpg", data)})
    assert r.status_code == 200
    probs = local_probabilities(models_dir, data)
    confident = [name for name, p in local_tagger(models_dir).top_categories(probs, 10) if p > 0.2]
    assert len(confident) <= 4 and r.json()[:-1] == confident and r.json()[-1] in ("indoor", "outdoor")


# -- refusing to start --------------------------------------------------------------------------------------


def run_service(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AMBIENCE_TAGGER_DATA_DIR": str(tmp_path / "d")}
    return subprocess.run(
        [sys.executable, "-m", "services.tagger"],
        cwd=REPO,
        env={**base, "AMBIENCE_TAGGER_PORT": "0", "AMBIENCE_DOWNLOAD_MODELS": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exits_2_naming_the_fetch_command_without_weights(tmp_path: Path) -> None:
    proc = run_service({"AMBIENCE_MODELS_DIR": str(tmp_path / "models")}, tmp_path)
    assert proc.returncode == EXIT_WEIGHTS_MISSING, proc.stderr
    assert "resnet50_places365.pth.tar" in proc.stderr and "ambience models fetch tagger" in proc.stderr


def test_exits_2_without_the_category_file(tmp_path: Path) -> None:
    env = {"AMBIENCE_MODELS_DIR": str(tmp_path / "models"), "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1"}
    proc = run_service({**env, "AMBIENCE_TAGGER_WEIGHTS": "random"}, tmp_path)
    assert proc.returncode == EXIT_WEIGHTS_MISSING, proc.stderr
    assert "categories_places365.txt" in proc.stderr and "ambience models fetch tagger" in proc.stderr
