"""An open_clip model as image and text embedding sessions sharing one space.

The image tower is loaded at start-up (every add needs it). The text tower and the tokenizer are
loaded on the first text query and released again after ``text_idle_s`` seconds without one: a
library being indexed never holds them, and SigLIP 2's text tower (about 280M parameters, most of
them its 256k-token vocabulary) is three times its image tower. A query after a release waits for
the load once (a few seconds for SigLIP 2 from a local disk).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.utils import to_2tuple
from PIL import Image

from services.common.models.inference import build_image_tower
from services.common.models.memory import release_freed_memory
from services.common.models.onnx_export import TowerExport
from services.common.models.open_clip_loader import (
    load_open_clip_tower,
    open_clip_build,
    register_model_configs,
)
from services.common.models.sessions import PixelPipeline
from services.common.models.weights import ResolvedWeights
from services.image_text.descriptor import MODEL
from services.image_text.settings import ImageTextSettings
from services.image_text.text_tower import LazyTextTower, TextSide, text_loader
from services.image_text.tokenizer import text_config

log = logging.getLogger(__name__)


class OpenClipSession(TextSide):
    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        device: torch.device,
        quick_gelu: bool = False,
        preprocess_cfg: dict[str, Any] | None = None,
        runtime: str = "eager",
        tokenizer_folder: Path | None = None,
        text_idle_s: float = 0.0,
    ) -> None:
        self.model_id = model
        self.weights = weights
        self.device = device
        visual = load_open_clip_tower(model, weights, "visual", quick_gelu, preprocess_cfg).to(device)
        release_freed_memory()  # the rest of a model built whole (random weights, a .bin checkpoint)
        self.pipeline = PixelPipeline(
            image_transform_v2(PreprocessCfg(**visual.preprocess_cfg), is_train=False)
        )
        size = to_2tuple(visual.image_size)
        self.runtime = runtime
        # encode_image is the image tower and an L2 normalisation: the tower is what a runtime runs.
        self.tower = build_image_tower(visual, runtime, torch.zeros(1, 3, *size, device=device))
        self.context_length = int(text_config(model).get("context_length", 77))

        load_text = text_loader(model, weights, device, quick_gelu, preprocess_cfg, tokenizer_folder)
        self.text = LazyTextTower(load_text, text_idle_s)
        self.dim = int(self.embed_images(np.zeros((1, *size, 3), np.uint8)).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.pipeline.pixels(image.convert("RGB"))

    @torch.inference_mode()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        out = self.tower(self.pipeline.to_tensor(pixels, self.device))
        return torch.nn.functional.normalize(out, dim=-1).cpu().numpy()


def export_tower(settings: ImageTextSettings) -> TowerExport:
    """The ONNX export's builder (:mod:`services.common.models.onnx_export`): the image tower as the
    eager session loads it, and what the serving side needs for the text side without torch."""
    register_model_configs(settings.service_name, settings.model_config_path)
    weights = MODEL.resolve(settings)
    build = open_clip_build(settings.model, settings.weights, weights, settings.quick_gelu)
    folder = MODEL.tokenizer_folder(settings)
    visual = load_open_clip_tower(settings.model, weights, "visual", build.quick_gelu, build.preprocess)
    transform = image_transform_v2(PreprocessCfg(**visual.preprocess_cfg), is_train=False)
    extra = {
        "context_length": int(text_config(settings.model).get("context_length", 77)),
        "quick_gelu": build.quick_gelu,
        "preprocess_cfg": build.preprocess,
        "tokenizer_folder": str(folder) if folder is not None else None,
        # a cached export is stale once these are gone (the export names what is missing)
        "required_files": [str(folder / "tokenizer.json")] if folder is not None else [],
    }
    return TowerExport(visual, transform, weights, settings.model, to_2tuple(visual.image_size), extra)
