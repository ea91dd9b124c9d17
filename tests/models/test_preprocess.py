"""The torch-free preprocessing of runtime onnx (services.common.models.preprocess) against the
torchvision transforms timm and open_clip build: the same uint8 pixels, and ToTensor + Normalize in
numpy within float rounding, on real photos (where present) and on synthetic images of awkward sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import timm.data
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision import transforms as T

from ambience_support.images import synthetic_image
from ambience_support.photos import load_rgb
from services.common.models.preprocess import PreprocessPlan, describe_transform
from services.common.models.sessions import PixelPipeline


def transforms() -> dict[str, object]:
    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    timm_config = timm.data.resolve_data_config({}, model=lite0)
    return {
        "timm-lite0": timm.data.create_transform(**timm_config, is_training=False),
        # SigLIP 2 B/32's webli tag: squash (a two-sided Resize) to 256
        "open_clip-squash": image_transform_v2(
            PreprocessCfg(size=256, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="squash"), is_train=False
        ),
        "open_clip-shortest": image_transform_v2(PreprocessCfg(size=224), is_train=False),
        # a crop larger than the image: torchvision pads with zeros
        "crop-pad": T.Compose([T.CenterCrop((300, 280)), T.ToTensor(), T.Normalize((0.1,) * 3, (0.2,) * 3)]),
    }


@pytest.fixture(scope="module")
def pipelines() -> dict[str, tuple[PixelPipeline, PreprocessPlan]]:
    out = {}
    for name, transform in transforms().items():
        plan = PreprocessPlan.from_dict(describe_transform(transform).to_dict())  # through the sidecar form
        out[name] = (PixelPipeline(transform), plan)
    return out


def images() -> list[Image.Image]:
    sizes = [(640, 480), (300, 200), (201, 333), (100, 60), (255, 256), (224, 300)]
    return [synthetic_image(seed, size) for seed, size in enumerate(sizes)]


def check_same(pipelines: dict[str, tuple[PixelPipeline, PreprocessPlan]], batch: list[Image.Image]) -> None:
    for name, (pipeline, plan) in pipelines.items():
        for image in batch:
            want = pipeline.pixels(image)
            got = plan.pixels(image)
            assert got.shape == want.shape, (name, image.size)
            assert np.array_equal(got, want), (name, image.size, np.abs(got.astype(int) - want).max())
        stacked = np.stack([plan.pixels(image) for image in batch[:3]])
        want_tensor = pipeline.to_tensor(stacked, torch.device("cpu")).numpy()
        np.testing.assert_allclose(plan.normalise(stacked), want_tensor, atol=1e-6)


def test_plan_gives_the_transform_pixels_on_synthetic_images(pipelines: dict) -> None:
    check_same(pipelines, images())


def test_plan_gives_the_transform_pixels_on_real_photos(pipelines: dict, photos: list[Path]) -> None:
    check_same(pipelines, [load_rgb(path, max_side=900) for path in photos[:12]])


def test_unknown_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="RandomHorizontalFlip"):
        describe_transform(T.Compose([T.RandomHorizontalFlip(), T.ToTensor()]))
    with pytest.raises(ValueError, match="ToTensor"):
        describe_transform(T.Compose([T.Resize(10)]))
