"""Every selectable image-tower runtime builds and computes what eager PyTorch computes."""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import pytest
import torch
import torchvision

from services.common.errors import StartupError
from services.common.models.inference import (
    LOWER_PRECISION,
    RUNTIMES,
    build_image_tower,
    cpu_has_native_bf16,
    resolve_runtime,
)

TINY_CLIP = Path(__file__).with_name("tiny-clip.json")
TINY_COCA = Path(__file__).parents[1] / "captioner" / "tiny-coca.json"


def _model(name: str) -> tuple[torch.nn.Module, int]:
    torch.manual_seed(0)
    if name == "resnet":  # the tagger's family, small
        return torchvision.models.resnet18(num_classes=16), 64
    open_clip.add_model_config(TINY_CLIP)
    open_clip.add_model_config(TINY_COCA)
    if name == "clip":  # image_text: a ViT image tower
        return open_clip.create_model("tiny-clip").visual, 64
    return open_clip.create_model("tiny-coca").visual, 64  # the captioner's encoder: two outputs


def _outputs(out: object) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple) else [out]  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["resnet", "clip", "coca"])
def test_each_runtime_gives_what_eager_gives(name: str, runtime: str) -> None:
    if runtime == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16")
    net, size = _model(name)
    net.eval()
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = _outputs(net(pixels))
    tower = build_image_tower(copy.deepcopy(net), runtime, pixels[:1])
    assert tower.runtime == runtime
    got = _outputs(tower(pixels))  # another batch size than the example it was built with
    assert len(got) == len(expected)
    for out, ref in zip(got, expected, strict=True):
        assert out.dtype == torch.float32 and out.shape == ref.shape
        if runtime in LOWER_PRECISION:  # close in direction, per image
            cosine = torch.nn.functional.cosine_similarity(out.flatten(1), ref.flatten(1))
            assert cosine.min() > 0.99, (runtime, cosine)
        else:
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_auto_is_the_service_choice_on_cpu_and_eager_elsewhere() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_runtime("auto", "onnx", cpu) == "onnx"
    assert resolve_runtime("auto", "onnx", cuda) == "eager"
    assert resolve_runtime("channels_last", "onnx", cuda) == "channels_last"
    with pytest.raises(StartupError, match="CPU only"):
        resolve_runtime("onnx", "eager", cuda)
    with pytest.raises(StartupError, match="unknown runtime"):
        resolve_runtime("tensorrt", "eager", cpu)
