"""An open_clip model as image and text embedding sessions sharing one space."""

from __future__ import annotations

from typing import Any

import numpy as np
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.utils import to_2tuple
from PIL import Image

from services.common.models.inference import build_image_tower
from services.common.models.open_clip_loader import load_open_clip_model
from services.common.models.sessions import PixelPipeline
from services.common.models.weights import ResolvedWeights


class OpenClipSession:
    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        device: torch.device,
        quick_gelu: bool = False,
        preprocess_cfg: dict[str, Any] | None = None,
        runtime: str = "eager",
    ) -> None:
        self.model_id = model
        self.weights = weights
        self.device = device
        self.net = load_open_clip_model(model, weights, quick_gelu, preprocess_cfg).to(device)
        self.pipeline = PixelPipeline(
            image_transform_v2(PreprocessCfg(**self.net.visual.preprocess_cfg), is_train=False)
        )
        size = to_2tuple(self.net.visual.image_size)
        self.runtime = runtime
        # encode_image is the image tower and an L2 normalisation: the tower is what a runtime runs.
        self.tower = build_image_tower(self.net.visual, runtime, torch.zeros(1, 3, *size, device=device))
        self.tokenizer = open_clip.get_tokenizer(model)
        self.context_length = int(getattr(self.tokenizer, "context_length", 77))
        self.dim = int(self.embed_texts(self.tokenize("a photo")[None]).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.pipeline.pixels(image.convert("RGB"))

    def tokenize(self, text: str) -> torch.Tensor:
        # open_clip's tokenizers cut texts longer than the context and keep the end-of-text token.
        return self.tokenizer([text])[0]

    @torch.inference_mode()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        out = self.tower(self.pipeline.to_tensor(pixels, self.device))
        return torch.nn.functional.normalize(out, dim=-1).cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, tokens: torch.Tensor) -> np.ndarray:
        out = self.net.encode_text(tokens.to(self.device), normalize=True)
        return out.float().cpu().numpy()
