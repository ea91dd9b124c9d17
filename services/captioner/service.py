"""Wires the CoCa captioner to the kit: ``POST /get_image_caption`` -> a JSON string."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from pydantic import Field

from services.captioner.descriptor import DESCRIPTOR, MODEL
from services.common.models.batching import MicroBatcher
from services.common.models.inference import resolve_runtime
from services.common.models.open_clip_loader import open_clip_build, register_model_configs
from services.common.models.sessions import configure_torch, select_device
from services.common.models.spec import ModelServiceSettings, weights_field
from services.common.stateless import StatelessService, image_app

log = logging.getLogger(__name__)


class CaptionerSettings(ModelServiceSettings):
    service_descriptor = DESCRIPTOR

    model: str = Field("coca_ViT-L-14", description="open_clip CoCa model (coca_ViT-L-14 or coca_ViT-B-32)")
    weights: str = weights_field("mscoco_finetuned_laion2b_s13b_b90k", "open_clip pretrained tag")
    beam_width: int = Field(
        2,
        ge=1,
        le=32,
        description="Beams searched per image (2 = open_clip's default generate: 6 beams in 3 groups "
        "without diversity penalty)",
    )
    min_length: int = Field(5, ge=2, description="Shortest caption in tokens, start token included")
    max_length: int = Field(30, ge=3, le=77, description="Longest caption in tokens, start token included")
    kv_cache: bool = Field(
        True,
        description="Decode one new token per step with the decoder's keys and values cached (false: "
        "re-run the towers on the whole prefix at every step, as open_clip does; same captions, slower)",
    )
    max_batch: int = Field(8, ge=1, description="Most images one beam search takes (micro-batching)")
    decode_size: int = Field(
        448, ge=32, description="JPEGs are decoded at reduced size with the short side >= this"
    )
    model_config_path: str = Field(
        "", description="Extra open_clip model config JSON (file or folder) registered before building"
    )


class CaptionerService(StatelessService):
    description = "Captions for pictures (open_clip CoCa, beam search)."
    settings: CaptionerSettings

    def load(self) -> None:
        from services.captioner.coca import CocaCaptioner

        s = self.settings
        configure_torch(s)
        register_model_configs(s.service_name, s.model_config_path)
        weights = MODEL.resolve(s)
        device = select_device(s.device)
        self.captioner = CocaCaptioner(
            s.model,
            weights,
            device,
            open_clip_build(s.model, s.weights, weights).preprocess,  # the tag's normalisation, resize
            beam_width=s.beam_width,
            min_length=s.min_length,
            max_length=s.max_length,
            kv_cache=s.kv_cache,
            runtime=resolve_runtime(s.runtime, s.cpu_runtime, device),
        )
        self.batcher: MicroBatcher[Any, str] = MicroBatcher(
            self._caption_batch, s.max_batch, s.batch_wait_ms / 1000, name="captioner-batcher"
        )
        log.info("captioner ready: %s (%s) on %s", s.model, weights.source, self.captioner.device)

    def close(self) -> None:
        if hasattr(self, "batcher"):
            self.batcher.close()

    def _caption_batch(self, pixels: list[Any]) -> list[str]:
        import torch

        return self.captioner.caption(torch.stack(pixels))

    def caption(self, data: bytes) -> str:
        image = self.decode(data, "RGB", draft_size=self.settings.decode_size).image
        return self.batcher.submit(self.captioner.preprocess(image))

    def info(self) -> dict[str, Any]:
        c = self.captioner
        return {
            "model": c.model_id,
            "device": str(c.device),
            "runtime": c.runtime,
            **c.weights.info(),
            "beam_width": c.beam_width,
            "min_length": c.min_length,
            "max_length": c.max_length,
            "kv_cache": c.kv_cache,
            "batching": self.batcher.stats.as_dict(),
        }


def build_app(settings: CaptionerSettings | None = None) -> FastAPI:
    service = CaptionerService(settings or CaptionerSettings())
    return image_app(
        service, "/get_image_caption", service.caption, str, "A one-sentence caption of the uploaded picture."
    )
