"""A timm image model as an :class:`~services.common.models.sessions.ImageEmbeddingSession`: the model's own
pooled features (classifier removed), L2-normalised, with the preprocessing its pretrained config
asks for (resize, centre crop, mean/std).

``pooling`` other than ``model`` reads the ViT's token sequence instead (timm ``forward_features``):
``token`` the class token, ``avg`` the mean of the patch tokens, ``token_avg`` both concatenated (each
half L2-normalised first, so neither dominates), as DINOv2's linear evaluation does: the class token
is tuned for the whole image's category, the patch mean keeps more of what is where.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import timm
import timm.data
import torch
from PIL import Image

from services.common.errors import StartupError
from services.common.models.inference import build_image_tower
from services.common.models.onnx_export import TowerExport
from services.common.models.sessions import PixelPipeline
from services.common.models.timm_loader import load_timm_model
from services.common.models.weights import ResolvedWeights
from services.global_features.descriptor import MODEL
from services.global_features.settings import GlobalFeaturesSettings


class TokenPooling(torch.nn.Module):
    """A ViT's class token, mean patch token, or both (each normalised), from its token sequence."""

    def __init__(self, net: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.net = net
        self.pooling = pooling
        self.prefix_tokens = int(getattr(net, "num_prefix_tokens", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.net.forward_features(x).float()  # (n, prefix + patches, width), normed
        token = torch.nn.functional.normalize(tokens[:, 0], dim=1)
        avg = torch.nn.functional.normalize(tokens[:, self.prefix_tokens :].mean(dim=1), dim=1)
        return {"token": token, "avg": avg, "token_avg": torch.cat([token, avg], dim=1)}[self.pooling]


def build_timm_tower(
    model: str, weights: ResolvedWeights, pooling: str = "model"
) -> tuple[str, torch.nn.Module, Any, tuple[int, int]]:
    """(model id, the tower giving the pooled features, its eval transform, input (height, width))."""
    # Another pooling gives other vectors from the same weights: the store must tell them apart.
    model_id = model if pooling == "model" else f"{model}+{pooling}"
    net = load_timm_model(model, weights)
    has_class_token = int(getattr(net, "num_prefix_tokens", 0)) >= 1
    if pooling != "model" and not (has_class_token and hasattr(net, "forward_features")):
        raise StartupError(
            f"pooling {pooling!r} needs a ViT with a class token (e.g. vit_small_patch14_dinov2); "
            f"{model!r} has none: use pooling 'model'"
        )
    # The preprocessing comes from the timm model's pretrained config, before any pooling wrapper.
    config = timm.data.resolve_data_config({}, model=net)
    if pooling != "model":
        net = TokenPooling(net, pooling).eval()
    _, height, width = config["input_size"]
    return model_id, net, timm.data.create_transform(**config, is_training=False), (height, width)


def export_tower(settings: GlobalFeaturesSettings) -> TowerExport:
    """The ONNX export's builder (:mod:`services.common.models.onnx_export`): the tower as eager loads it."""
    weights = MODEL.resolve(settings)
    model_id, net, transform, size = build_timm_tower(settings.model, weights, settings.pooling)
    return TowerExport(net, transform, weights, model_id, size)


class TimmSession:
    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        device: torch.device,
        runtime: str = "eager",
        pooling: str = "model",
    ) -> None:
        self.model_id, net, transform, (height, width) = build_timm_tower(model, weights, pooling)
        self.input_size: tuple[int, int, int] = (3, height, width)
        self.weights = weights
        self.device = device
        self.pooling = pooling
        self.net = net.to(device)
        self.pipeline = PixelPipeline(transform)
        # The pooled width is not always num_features (e.g. models with a pre-logits layer); ask the model.
        self.runtime = runtime
        self.tower = build_image_tower(self.net, runtime, torch.zeros(1, 3, height, width, device=device))
        self.dim = int(self.embed_images(np.zeros((1, height, width, 3), np.uint8)).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.pipeline.pixels(image.convert("RGB"))

    @torch.inference_mode()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        out = self.tower(self.pipeline.to_tensor(pixels, self.device))
        return torch.nn.functional.normalize(out.reshape(out.shape[0], -1), dim=1).cpu().numpy()
