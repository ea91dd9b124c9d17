"""image_text under runtime ``onnx``: the image tower from the cached export
(:class:`~services.common.models.onnx_tower.OnnxImageSession`, no torch), the text side as under
eager (:mod:`services.image_text.text_tower`: torch is imported on the first text query only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.common.models.onnx_tower import OnnxImageSession
from services.image_text.settings import ImageTextSettings
from services.image_text.text_tower import LazyTextTower, TextSide, text_loader

#: The builder the export child runs, and the settings that choose the exported graph.
EXPORT_BUILDER = "services.image_text.model:export_tower"
EXPORT_SETTINGS = ("model", "weights", "quick_gelu", "model_config_path", "tokenizer")


class OnnxClipSession(OnnxImageSession, TextSide):
    def __init__(self, settings: ImageTextSettings) -> None:
        super().__init__(settings, EXPORT_BUILDER, EXPORT_SETTINGS, settings.torch_threads)
        extra = self.meta["extra"]
        self.context_length = int(extra["context_length"])
        folder = Path(extra["tokenizer_folder"]) if extra["tokenizer_folder"] else None
        load = text_loader(
            settings.model, self.weights, "cpu", extra["quick_gelu"], extra["preprocess_cfg"], folder
        )

        def load_text() -> tuple[Any, Any]:
            # The first text query brings torch into this process: the service's settings apply.
            from services.common.models.open_clip_loader import register_model_configs
            from services.common.models.sessions import configure_torch

            configure_torch(settings)
            register_model_configs(settings.service_name, settings.model_config_path)
            return load()

        self.text = LazyTextTower(load_text, settings.text_idle_s)
