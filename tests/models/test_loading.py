"""The shared model-loading layer: weight resolution, refusals, checkpoint formats, micro-batching."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ambience_support.checkpoints import checkpoint_variants
from ambience_support.photos import REPO
from services.common.errors import EXIT_WEIGHTS_MISSING, StartupError, WeightsMissingError
from services.common.models.batching import MicroBatcher
from services.common.models.open_clip_loader import load_open_clip_model
from services.common.models.timm_loader import load_timm_model
from services.common.models.weights import ResolvedWeights, sha256_file
from services.global_features.settings import GlobalFeaturesSettings
from services.registry import required_weights

TINY_CLIP = Path(__file__).with_name("tiny-clip.json")


# -- resolving weights -----------------------------------------------------------------------------------


def test_random_weights_need_the_test_switch(offline_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GlobalFeaturesSettings(weights="random")
    with pytest.raises(StartupError, match="AMBIENCE_ALLOW_RANDOM_WEIGHTS=1") as info:
        settings.model_spec.resolve(settings)
    assert not isinstance(info.value, WeightsMissingError)
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    weights = settings.model_spec.resolve(settings)
    assert weights.random and weights.info() == {"weights": "random"}


def test_missing_hub_weights_name_the_file_and_the_fix(offline_models: Path) -> None:
    settings = GlobalFeaturesSettings()
    with pytest.raises(WeightsMissingError) as info:
        settings.model_spec.resolve(settings)
    message = str(info.value)
    target = offline_models / "global_features" / "beit_base_patch16_224.in22k_ft_in22k" / "model.safetensors"
    assert str(target) in message
    assert "ambience models fetch global_features" in message
    assert "AMBIENCE_GLOBAL_FEATURES_WEIGHTS" in message
    assert info.value.exit_code == EXIT_WEIGHTS_MISSING


def test_missing_local_file_names_the_file_and_the_variable(offline_models: Path, tmp_path: Path) -> None:
    settings = GlobalFeaturesSettings(weights=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsMissingError, match=r"nope\.pth.*AMBIENCE_GLOBAL_FEATURES_WEIGHTS"):
        settings.model_spec.resolve(settings)


def test_hub_weights_already_on_disk_are_used_with_their_digest(offline_models: Path) -> None:
    settings = GlobalFeaturesSettings(model="test_vit.r160_in1k")
    wf = settings.model_spec.hub_file(settings, "")
    assert wf.hf_repo == "timm/test_vit.r160_in1k"
    wf.target.parent.mkdir(parents=True)
    wf.target.write_bytes(b"pretend checkpoint")
    weights = settings.model_spec.resolve(settings)
    assert weights.kind == "hub" and weights.path == wf.target
    assert weights.digest == sha256_file(wf.target) and len(weights.digest) == 64


def test_registry_lists_the_weights_each_service_needs(offline_models: Path) -> None:
    (wf,) = required_weights("global_features")
    assert wf.hf_repo == "timm/beit_base_patch16_224.in22k_ft_in22k"
    assert wf.target.is_relative_to(offline_models)
    assert "ambience models fetch global_features" in wf.fix()
    clip, tokenizer, tokenizer_config = required_weights("image_text")  # SigLIP 2: its HF tokenizer too
    assert (
        clip.hf_repo == "timm/ViT-B-32-SigLIP2-256" and clip.hf_filenames[0] == "open_clip_model.safetensors"
    )
    folder = offline_models / "image_text" / "tokenizers" / "timm_ViT-B-32-SigLIP2-256"
    assert tokenizer.target == folder / "tokenizer.json" and tokenizer.hf_repo == "timm/ViT-B-32-SigLIP2-256"
    assert tokenizer_config.target == folder / "tokenizer_config.json"
    assert required_weights("phash") == []


def test_registry_lists_hardnet8_for_local_features(
    offline_models: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (hardnet,) = required_weights("local_features")  # defaults: descriptor hardnet8, kornia weights
    assert hardnet.target == offline_models / "local_features" / "hardnet8v2.pt"
    assert hardnet.sources() == [
        "https://huggingface.co/kornia/hardnet/resolve/main/hardnet8v2.pt",
        "https://cmp.felk.cvut.cz/~mishkdmy/hardnet8v2.pt",
    ]
    assert hardnet.env_var == "AMBIENCE_LOCAL_FEATURES_HARDNET_WEIGHTS"
    assert "ambience models fetch local_features" in hardnet.fix()
    monkeypatch.setenv("AMBIENCE_LOCAL_FEATURES_DESCRIPTOR", "rootsift")
    assert required_weights("local_features") == []
    monkeypatch.setenv("AMBIENCE_LOCAL_FEATURES_DESCRIPTOR", "hardnet8")
    for local_or_random in (str(tmp_path / "my-hardnet.pt"), "random"):
        monkeypatch.setenv("AMBIENCE_LOCAL_FEATURES_HARDNET_WEIGHTS", local_or_random)
        assert required_weights("local_features") == []
    monkeypatch.setenv("AMBIENCE_LOCAL_FEATURES_HARDNET_WEIGHTS", "hardnet9")
    with pytest.raises(StartupError, match="hardnet9"):
        required_weights("local_features")


def run_global_features(models: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The global_features service as a process, without weights in ``models``."""
    base = {
        "AMBIENCE_GLOBAL_FEATURES_DATA_DIR": str(tmp_path / "data"),
        "AMBIENCE_GLOBAL_FEATURES_PORT": "0",
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.global_features"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_service_process_exits_2_when_weights_are_missing(offline_models: Path, tmp_path: Path) -> None:
    proc = run_global_features(offline_models, tmp_path)
    assert proc.returncode == EXIT_WEIGHTS_MISSING, proc.stderr
    assert "model.safetensors" in proc.stderr and "ambience models fetch global_features" in proc.stderr


# -- checkpoint formats (built from the architecture itself, loaded strictly) -------------------------------


def test_timm_loader_accepts_published_checkpoint_formats(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("test_vit", pretrained=False).eval()  # head included, as published
    x = torch.randn(2, 3, 160, 160)
    with torch.inference_mode():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
    for label, path in checkpoint_variants(reference.state_dict(), tmp_path).items():
        weights = ResolvedWeights("file", path, sha256_file(path), str(path))
        net = load_timm_model("test_vit", weights)
        with torch.inference_mode():
            assert torch.allclose(net(x), expected, atol=1e-5), label
    # A checkpoint of another architecture is refused, not half-loaded.
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet", pretrained=False).state_dict(), other)
    with pytest.raises(StartupError, match="does not fit"):
        load_timm_model("test_vit", ResolvedWeights("file", other, "x", str(other)))


def test_open_clip_loader_accepts_published_checkpoint_formats(tmp_path: Path) -> None:
    import open_clip

    open_clip.add_model_config(TINY_CLIP)
    torch.manual_seed(2)
    reference = open_clip.create_model("tiny-clip").eval()
    image, text = torch.randn(2, 3, 64, 64), open_clip.get_tokenizer("tiny-clip")(["a dog", "a cat"])
    with torch.inference_mode():
        expected_image, expected_text = reference.encode_image(image), reference.encode_text(text)
    variants = checkpoint_variants(reference.state_dict(), tmp_path)
    # OpenAI's releases are TorchScript archives of the same module layout.
    variants["TorchScript archive (OpenAI ViT-B-16.pt)"] = tmp_path / "openai-jit.pt"
    torch.jit.trace(reference, (image, text), check_trace=False).save(str(tmp_path / "openai-jit.pt"))
    for label, path in variants.items():
        net = load_open_clip_model("tiny-clip", ResolvedWeights("file", path, "x", str(path)))
        with torch.inference_mode():
            assert torch.allclose(net.encode_image(image), expected_image, atol=1e-5), label
            assert torch.allclose(net.encode_text(text), expected_text, atol=1e-5), label
    broken = tmp_path / "broken.pth"
    state = reference.state_dict()
    state.pop("text_projection")
    torch.save(state, broken)
    with pytest.raises(StartupError, match="does not fit"):
        load_open_clip_model("tiny-clip", ResolvedWeights("file", broken, "x", str(broken)))


def test_random_weights_are_the_same_in_every_process() -> None:
    weights = ResolvedWeights("random", None, "random-seed0", "random")
    a, b = load_timm_model("test_vit", weights), load_timm_model("test_vit", weights)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


# -- micro-batching ------------------------------------------------------------------------------------------


def test_micro_batcher_batches_waiting_requests_and_keeps_order() -> None:
    calls: list[int] = []

    def slow_square(items: list[int]) -> list[int]:
        calls.append(len(items))
        time.sleep(0.05)
        return [i * i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(slow_square, max_batch=8)
    results: dict[int, int] = {}

    def worker(i: int) -> None:
        results[i] = batcher.submit(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * i for i in range(20)}
    assert max(calls) > 1 and max(calls) <= 8 and sum(calls) == 20
    assert batcher.stats.batches == len(calls) < 20
    assert batcher.submit_many([3, 4]) == [9, 16]
    batcher.close()
    with pytest.raises(RuntimeError, match="shut down"):
        batcher.submit(1)


def test_micro_batcher_hands_failures_to_the_callers_and_survives() -> None:
    def fn(items: list[int]) -> list[float]:
        if 0 in items:
            raise ZeroDivisionError("zero")
        return [1 / i for i in items]

    batcher: MicroBatcher[int, float] = MicroBatcher(fn)
    with pytest.raises(ZeroDivisionError):
        batcher.submit(0)
    assert batcher.submit(4) == 0.25
    batcher.close()


def test_sha256_is_cached_and_invalidated(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    first = sha256_file(path)
    assert path.with_name("w.bin.sha256").exists() and sha256_file(path) == first
    path.write_bytes(b"b" * 1001)
    assert sha256_file(path) != first
    assert np.frombuffer(bytes.fromhex(first), np.uint8).size == 32


def test_pixel_pipeline_matches_the_model_transform() -> None:
    """Split preprocessing (PIL steps on request threads, normalisation batched) = the original."""
    import open_clip
    import timm
    import timm.data
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from ambience_support.images import synthetic_image
    from services.common.models.sessions import PixelPipeline

    open_clip.add_model_config(TINY_CLIP)
    clip = open_clip.create_model("tiny-clip")
    transforms = [
        timm.data.create_transform(**timm.data.resolve_data_config({}, model=timm.create_model("test_vit"))),
        image_transform_v2(PreprocessCfg(**clip.visual.preprocess_cfg), is_train=False),
    ]
    images = [synthetic_image(1, (320, 240)), synthetic_image(2, (200, 300))]
    for transform in transforms:
        pipeline = PixelPipeline(transform)
        batch = np.stack([pipeline.pixels(img) for img in images])
        assert batch.dtype == np.uint8
        expected = torch.stack([transform(img) for img in images])
        assert torch.allclose(pipeline.to_tensor(batch, torch.device("cpu")), expected, atol=1e-5)


def test_unresolvable_hub_fails_at_once_with_one_short_message(offline_models: Path, tmp_path: Path) -> None:
    # Downloads on, but the hub's name does not resolve (a box without internet).
    proc = run_global_features(
        offline_models,
        tmp_path,
        AMBIENCE_DOWNLOAD_MODELS="1",
        HF_ENDPOINT="http://hub.ambience-test.invalid",
    )
    assert proc.returncode == EXIT_WEIGHTS_MISSING, proc.stderr
    assert "does not resolve" in proc.stderr and "ambience models fetch global_features" in proc.stderr
    assert '"Offline"' in proc.stderr
    assert "Traceback" not in proc.stderr, "a refusal we explain needs no traceback"
    assert ".part" not in proc.stderr, "no partial file exists to speak of"
    assert "attempts" not in proc.stderr, "a name that does not resolve is not retried"
    assert proc.stderr.count("ambience models fetch global_features") == 1


def test_hub_fallback_is_saved_under_its_own_name(
    offline_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ambience_support.weights_server import WeightsServer

    settings = GlobalFeaturesSettings(model="test_vit.r160_in1k")
    with WeightsServer() as server:
        # The hub has no model.safetensors for this repo, only the pickled pytorch_model.bin.
        server.files["pytorch_model.bin"] = b"pickled checkpoint"
        monkeypatch.setenv("HF_ENDPOINT", server.base_url + "/files")
        monkeypatch.setenv("AMBIENCE_DOWNLOAD_MODELS", "1")
        weights = settings.model_spec.resolve(settings)
    assert weights.path is not None and weights.path.name == "pytorch_model.bin"
    assert weights.path.read_bytes() == b"pickled checkpoint"
    assert not weights.path.with_name("model.safetensors").exists()
    # Found again at the next start, without a download.
    monkeypatch.setenv("AMBIENCE_DOWNLOAD_MODELS", "0")
    assert settings.model_spec.resolve(settings).path == weights.path
