"""Wires open_clip image and text embeddings to the service kit, plus text-to-image search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import Field, field_validator
from starlette.concurrency import run_in_threadpool

from services.common.app import create_app
from services.common.embedding import AQEParams, EmbeddingFeature, EmbeddingSettings
from services.common.errors import StartupError
from services.common.feature import Hit
from services.common.index import AnyIndex, new_flat_index
from services.common.inference import resolve_runtime
from services.common.models import (
    RANDOM,
    MicroBatcher,
    ModelServiceSettings,
    WeightsFile,
    looks_like_path,
    open_clip_weights_file,
    resolve_weights,
    select_device,
)
from services.common.schemas import ERROR_RESPONSES, SearchParams, SimilarImage
from services.common.settings import CommonSettings
from services.image_text.descriptor import DESCRIPTOR


class ImageTextSettings(EmbeddingSettings):
    service_descriptor = DESCRIPTOR

    model: str = Field("ViT-B-16", description="open_clip model name")
    weights: str = Field(
        "openai",
        description="open_clip pretrained tag for the model (e.g. openai, laion2b_s34b_b88k), a local "
        "checkpoint file, or 'random' (tests only, needs AMBIENCE_ALLOW_RANDOM_WEIGHTS=1)",
    )
    quick_gelu: bool = Field(
        False,
        description="Build the QuickGELU variant (OpenAI weights loaded from a local file need it; "
        "hub tags set it themselves)",
    )
    model_config_path: str = Field(
        "", description="Extra open_clip model config JSON (file or folder) registered before building"
    )


class TextQuery(SearchParams, AQEParams):
    text: str = Field(
        description="What the pictures should show; longer texts are cut to the model's context"
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        return value


def register_model_configs(settings: ImageTextSettings) -> None:
    if settings.model_config_path:
        import open_clip

        path = Path(settings.model_config_path)
        if not path.exists():
            raise StartupError(f"model_config_path {path} does not exist")
        open_clip.add_model_config(path)


def weights_files(settings: ModelServiceSettings | None = None) -> list[WeightsFile]:
    """Weights image_text needs with these settings (for ``ambience models fetch``)."""
    s = settings if isinstance(settings, ImageTextSettings) else ImageTextSettings()
    if s.weights == RANDOM or looks_like_path(s.weights):
        return []
    return [
        open_clip_weights_file(
            s.service_name, s.model, s.weights, CommonSettings().models_dir, s.weights_env_var()
        )
    ]


class ImageTextFeature(EmbeddingFeature):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    settings: ImageTextSettings

    def load_session(self) -> Any:
        import open_clip

        from services.image_text.model import OpenClipSession

        s = self.settings
        register_model_configs(s)
        models_dir = CommonSettings().models_dir
        weights = resolve_weights(
            s,
            lambda tag: open_clip_weights_file(s.service_name, s.model, tag, models_dir, s.weights_env_var()),
        )
        quick_gelu, preprocess = s.quick_gelu, None
        if weights.kind == "hub":  # the tag's own settings (activation, normalisation) win
            cfg = open_clip.get_pretrained_cfg(s.model, s.weights)
            quick_gelu = quick_gelu or bool(cfg.get("quick_gelu", False))
            preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
        device = select_device(s.device)
        runtime = resolve_runtime(s.runtime, s.cpu_runtime, device)
        return OpenClipSession(s.model, weights, device, quick_gelu, preprocess, runtime)

    def load(self) -> None:
        super().load()
        self.text_batcher: MicroBatcher[Any, np.ndarray] = MicroBatcher(
            self._embed_text_batch,
            self.settings.max_batch,
            self.settings.batch_wait_ms / 1000,
            name="image_text-text-batcher",
        )

    def close(self) -> None:
        super().close()
        self.text_batcher.close()

    def _embed_text_batch(self, tokens: list[Any]) -> list[np.ndarray]:
        import torch

        return list(self.session.embed_texts(torch.stack(tokens)))  # type: ignore[attr-defined]

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "context_length": self.session.context_length,  # type: ignore[attr-defined]
            "text_batching": self.text_batcher.stats.as_dict(),
        }

    def index_config(self) -> str:
        return f"flat-l2-{self.session.dim}"

    def new_index(self) -> AnyIndex:
        return new_flat_index(self.session.dim, "l2")

    def embed_text(self, text: str) -> np.ndarray:
        """(1, dim) L2-normalised text embedding."""
        return self.text_batcher.submit(self.session.tokenize(text))[None, :]  # type: ignore[attr-defined]

    def search_by_text(self, text: str, search: SearchParams, params: AQEParams) -> list[Hit]:
        return self.search_vectors(self.expand(self.embed_text(text), params), search)


def build_app(settings: ImageTextSettings | None = None) -> FastAPI:
    feature = ImageTextFeature(settings or ImageTextSettings())
    app = create_app(feature)

    @app.post(
        "/image_text_features_get_similar_images_by_text",
        response_model=list[SimilarImage],
        responses=ERROR_RESPONSES,
    )
    async def search_by_text(body: TextQuery) -> list[Hit]:
        """Pictures matching a text, nearest first (squared L2 between unit CLIP embeddings)."""
        search = SearchParams(k=body.k, distance_threshold=body.distance_threshold)
        params = AQEParams(aqe_n=body.aqe_n, aqe_alpha=body.aqe_alpha)
        return await run_in_threadpool(feature.search_by_text, body.text, search, params)

    return app
