"""Wires the Places365 tagger to the kit: ``POST /get_image_tags`` -> a JSON array of strings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI
from pydantic import Field

from services.common.errors import StartupError
from services.common.models.batching import MicroBatcher
from services.common.models.inference import RuntimeName, resolve_runtime, runtime_field
from services.common.models.sessions import configure_torch, select_device
from services.common.models.spec import ModelServiceSettings, weights_field
from services.common.models.weights import RANDOM_SEED
from services.common.stateless import StatelessService, image_app
from services.tagger.descriptor import DESCRIPTOR, MODEL

log = logging.getLogger(__name__)


class TaggerSettings(ModelServiceSettings):
    service_descriptor = DESCRIPTOR
    #: ONNX Runtime ran the ResNet50 about 1.5x as fast as eager PyTorch (docs/models.md).
    cpu_runtime: ClassVar[str] = "onnx"
    runtime: RuntimeName = runtime_field("onnx")

    model: str = Field("resnet50", description="Architecture (only CSAIL's resnet50 is supported)")
    weights: str = weights_field(
        "", "'' = CSAIL's resnet50_places365.pth.tar in the models dir (downloaded when online)"
    )
    threshold: float = Field(
        0.2, ge=0, lt=1, description="Scene categories with a softmax probability above this become tags"
    )
    max_tags: int = Field(10, ge=0, description="Most scene tags per picture (0 = no limit)")
    categories_file: Path | None = Field(
        None, description="categories_places365.txt (default: in the models dir, fetched with the weights)"
    )
    io_file: Path | None = Field(
        None, description="IO_places365.txt, indoor/outdoor per category (default: in the models dir)"
    )
    max_batch: int = Field(16, ge=1, description="Most images one forward pass takes (micro-batching)")
    decode_size: int = Field(
        256, ge=32, description="JPEGs are decoded at reduced size with the short side >= this"
    )


class TaggerService(StatelessService):
    description = "Places365 scene tags and indoor/outdoor for pictures (ResNet50)."
    settings: TaggerSettings

    def load(self) -> None:
        import torch

        from services.tagger.places import PlacesLabels, PlacesTagger, build_resnet50, load_places_checkpoint

        s = self.settings
        if s.model != "resnet50":
            raise StartupError(f"tagger: model {s.model!r} is not supported (only CSAIL's resnet50)")
        configure_torch(s)
        weights = MODEL.resolve(s)
        categories = MODEL.companion(s, "categories_file")
        io = MODEL.companion(s, "io_file")
        labels = PlacesLabels.read(categories, io)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)  # random weights (tests) are the same in every process
            net = build_resnet50(len(labels))
        if weights.path is not None:
            load_places_checkpoint(net, weights.path)
        self.weights = weights
        device = select_device(s.device)
        self.tagger = PlacesTagger(net, labels, device, resolve_runtime(s.runtime, s.cpu_runtime, device))
        self.batcher: MicroBatcher[Any, Any] = MicroBatcher(
            self._probabilities, s.max_batch, s.batch_wait_ms / 1000, name="tagger-batcher"
        )
        log.info("tagger ready: %s, %d categories, on %s", weights.source, len(labels), self.tagger.device)

    def close(self) -> None:
        if hasattr(self, "batcher"):
            self.batcher.close()

    def _probabilities(self, pixels: list[Any]) -> list[Any]:
        import torch

        return list(self.tagger.probabilities(torch.stack(pixels)))

    def tags(self, data: bytes) -> list[str]:
        image = self.decode(data, "RGB", draft_size=self.settings.decode_size).image
        probs = self.batcher.submit(self.tagger.preprocess(image))
        return self.tagger.tags(probs, self.settings.threshold, self.settings.max_tags)

    def info(self) -> dict[str, Any]:
        return {
            "model": f"{self.settings.model}_places365",
            "device": str(self.tagger.device),
            "runtime": self.tagger.runtime,
            **self.weights.info(),
            "categories": len(self.tagger.labels),
            "threshold": self.settings.threshold,
            "max_tags": self.settings.max_tags,
            "batching": self.batcher.stats.as_dict(),
        }


def build_app(settings: TaggerSettings | None = None) -> FastAPI:
    service = TaggerService(settings or TaggerSettings())
    return image_app(
        service,
        "/get_image_tags",
        service.tags,
        list[str],
        "Scene tags of the uploaded picture, best first, then 'indoor' or 'outdoor'.",
    )
