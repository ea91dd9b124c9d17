"""A timm image model as an :class:`~services.common.models.ImageEmbeddingSession`: the model's own
pooled features (classifier removed), L2-normalised, with the preprocessing its pretrained config
asks for (resize, centre crop, mean/std)."""

from __future__ import annotations

import numpy as np
import timm
import timm.data
import torch
from PIL import Image

from services.common.inference import build_image_tower
from services.common.models import PixelPipeline, ResolvedWeights, load_timm_model


class TimmSession:
    def __init__(
        self, model: str, weights: ResolvedWeights, device: torch.device, runtime: str = "eager"
    ) -> None:
        self.model_id = model
        self.weights = weights
        self.device = device
        self.net = load_timm_model(model, weights).to(device)
        config = timm.data.resolve_data_config({}, model=self.net)
        self.pipeline = PixelPipeline(timm.data.create_transform(**config, is_training=False))
        self.input_size: tuple[int, int, int] = tuple(config["input_size"])  # type: ignore[assignment]
        # The pooled width is not always num_features (e.g. models with a pre-logits layer); ask the model.
        _, height, width = self.input_size
        self.runtime = runtime
        self.tower = build_image_tower(self.net, runtime, torch.zeros(1, 3, height, width, device=device))
        self.dim = int(self.embed_images(np.zeros((1, height, width, 3), np.uint8)).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.pipeline.pixels(image.convert("RGB"))

    @torch.inference_mode()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        out = self.tower(self.pipeline.to_tensor(pixels, self.device))
        return torch.nn.functional.normalize(out.reshape(out.shape[0], -1), dim=1).cpu().numpy()
