"""image_text under runtime onnx (tiny CLIP, random weights): the serving process runs the image
tower without torch (read from /proc/PID/maps of the real process) until the first text query, which
loads the text tower as under eager; image vectors match eager's on real photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ambience_support.contract import add_synthetic_then_search
from ambience_support.offline import offline_models
from ambience_support.photos import load_rgb
from ambience_support.processes import ServiceProcess, running_service
from ambience_support.tiny_models import TINY_CLIP, TINY_IMAGE_TEXT
from services.image_text.settings import ImageTextSettings

#: Left out of day-to-day runs (pytest -m "not slow"): ONNX exports of SigLIP 2.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("onnx-models")
    with offline_models(folder):  # the in-process sessions below read the same cache
        yield folder


@pytest.fixture(scope="module")
def service(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_ONNX_DIR": str(models / "onnx"),
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_IMAGE_TEXT_MODEL": "tiny-clip",
        "AMBIENCE_IMAGE_TEXT_WEIGHTS": "random",
        "AMBIENCE_IMAGE_TEXT_MODEL_CONFIG_PATH": str(TINY_CLIP),
        "AMBIENCE_IMAGE_TEXT_RUNTIME": "onnx",
    }
    data_dir = tmp_path_factory.mktemp("it-onnx") / "data"
    with running_service("services.image_text", "AMBIENCE_IMAGE_TEXT_", data_dir, extra_env=env) as svc:
        svc.wait_healthy(timeout=240)
        yield svc


def torch_libraries(pid: int) -> list[str]:
    with open(f"/proc/{pid}/maps") as fh:
        paths = {line.split()[-1] for line in fh if len(line.split()) >= 6}
    return sorted(p for p in paths if "libtorch" in p or "/torch/" in p or "libc10" in p)


def test_images_are_served_without_torch_until_a_text_query(service: ServiceProcess) -> None:
    assert service.proc is not None
    with httpx.Client(base_url=service.url, timeout=60) as client:
        health = client.get("/health").json()
        assert health["runtime"] == "onnx" and health["text_tower_loaded"] is False
        search = "image_text_features_get_similar_images_by_image_buffer"
        hits = add_synthetic_then_search(client, "image_text_features", search, 3, 1)
        assert hits[0]["image_id"] == 2
        assert torch_libraries(service.proc.pid) == []
        r = client.post(
            "/image_text_features_get_similar_images_by_text", json={"text": "a red blob", "k": 3}
        )
        assert r.status_code == 200, r.text
        assert len(r.json()) == 3
        assert client.get("/health").json()["text_tower_loaded"] is True
    assert torch_libraries(service.proc.pid) != []  # the text tower is PyTorch, loaded on demand


def test_onnx_vectors_match_eager_on_real_photos(
    service: ServiceProcess, models: Path, photos: list[Path], tmp_path: Path
) -> None:
    import torch

    from services.common.models.open_clip_loader import register_model_configs
    from services.image_text.model import OpenClipSession
    from services.image_text.onnx_session import OnnxClipSession

    settings = ImageTextSettings(data_dir=tmp_path, runtime="onnx", **TINY_IMAGE_TEXT)  # type: ignore[arg-type]
    onnx = OnnxClipSession(settings)  # the service's export, not a new one
    assert len(list((models / "onnx" / "image_text").glob("*.onnx"))) == 1
    register_model_configs("image_text", str(TINY_CLIP))
    eager = OpenClipSession("tiny-clip", onnx.weights, torch.device("cpu"))
    batch = [load_rgb(path, max_side=800) for path in photos[:16]]
    pixels = np.stack([onnx.preprocess(image) for image in batch])
    assert np.array_equal(pixels, np.stack([eager.preprocess(image) for image in batch]))
    cosines = np.sum(onnx.embed_images(pixels) * eager.embed_images(pixels), axis=1)
    assert cosines.min() >= 0.999, cosines
    tokens = torch.stack([onnx.tokenize("a dog on a beach")])
    np.testing.assert_allclose(onnx.embed_texts(tokens), eager.embed_texts(tokens), atol=1e-5)
    onnx.close()
    eager.close()
