"""Wires open_clip image and text embeddings to the service kit, plus text-to-image search."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import Field, field_validator
from starlette.concurrency import run_in_threadpool

from services.common.features.app import create_app
from services.common.features.feature import Hit
from services.common.models.batching import MicroBatcher
from services.common.models.embedding import AQEParams, EmbeddingFeature
from services.common.models.inference import resolve_runtime
from services.common.models.onnx_tower import device_kind
from services.common.models.open_clip_loader import open_clip_build, register_model_configs
from services.common.models.sessions import configure_torch, select_device
from services.common.schemas import ERROR_RESPONSES, SearchParams, SimilarImage
from services.image_text.descriptor import DESCRIPTOR, MODEL
from services.image_text.settings import ImageTextSettings


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


class ImageTextFeature(EmbeddingFeature):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    settings: ImageTextSettings

    def load_session(self) -> Any:
        s = self.settings
        runtime = resolve_runtime(s.runtime, s.cpu_runtime, device_kind(s.device))
        if runtime == "onnx":  # the image tower from a cached export: no torch until a text query
            from services.image_text.onnx_session import OnnxClipSession

            return OnnxClipSession(s)
        from services.image_text.model import OpenClipSession

        register_model_configs(s.service_name, s.model_config_path)
        weights = MODEL.resolve(s)
        build = open_clip_build(s.model, s.weights, weights, s.quick_gelu)
        configure_torch(s)
        device = select_device(s.device)
        return OpenClipSession(
            s.model,
            weights,
            device,
            build.quick_gelu,
            build.preprocess,
            runtime,
            tokenizer_folder=MODEL.tokenizer_folder(s),
            text_idle_s=s.text_idle_s,
        )

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
        self.session.close()  # type: ignore[attr-defined]

    def _embed_text_batch(self, tokens: list[Any]) -> list[np.ndarray]:
        import torch

        return list(self.session.embed_texts(torch.stack(tokens)))  # type: ignore[attr-defined]

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "context_length": self.session.context_length,  # type: ignore[attr-defined]
            "text_tower_loaded": self.session.text.loaded,  # type: ignore[attr-defined]
            "text_batching": self.text_batcher.stats.as_dict(),
        }

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
