"""Wires the Places365 tagger to the kit: ``POST /get_image_tags`` -> a JSON array of strings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI
from pydantic import Field

from services.common.app import create_service_app
from services.common.errors import StartupError, WeightsMissingError
from services.common.inference import RuntimeName, resolve_runtime, runtime_field
from services.common.models import (
    RANDOM,
    RANDOM_SEED,
    MicroBatcher,
    ModelServiceSettings,
    WeightsFile,
    configure_torch,
    fetch_weights,
    looks_like_path,
    resolve_weights,
    select_device,
)
from services.common.settings import CommonSettings
from services.common.stateless import StatelessService, image_route
from services.tagger.descriptor import DESCRIPTOR

log = logging.getLogger(__name__)

#: CSAIL's published files (https://github.com/CSAILVision/places365).
CHECKPOINT_URL = "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar"
CATEGORIES_URL = "https://raw.githubusercontent.com/CSAILVision/places365/master/categories_places365.txt"
IO_URL = "https://raw.githubusercontent.com/CSAILVision/places365/master/IO_places365.txt"
DEFAULT_TAG = "places365"


class TaggerSettings(ModelServiceSettings):
    service_descriptor = DESCRIPTOR
    #: ONNX Runtime ran the ResNet50 about 1.5x as fast as eager PyTorch (docs/models.md).
    cpu_runtime: ClassVar[str] = "onnx"
    runtime: RuntimeName = runtime_field("onnx")

    model: str = Field("resnet50", description="Architecture (only CSAIL's resnet50 is supported)")
    weights: str = Field(
        "",
        description="'' = CSAIL's resnet50_places365.pth.tar in the models dir (downloaded when online), "
        "a local checkpoint file, or 'random' (tests only, needs AMBIENCE_ALLOW_RANDOM_WEIGHTS=1)",
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


def _folder() -> Path:
    return CommonSettings().models_dir / "tagger"


def checkpoint_file(settings: TaggerSettings) -> WeightsFile:
    return WeightsFile(
        service="tagger",
        description="CSAIL ResNet50 Places365 checkpoint",
        target=_folder() / "resnet50_places365.pth.tar",
        url=CHECKPOINT_URL,
        env_var=settings.weights_env_var(),
    )


def label_files(settings: TaggerSettings) -> list[WeightsFile]:
    """The category list and indoor/outdoor table (only those not set to local files)."""
    prefix = settings.env_prefix()
    out = []
    if settings.categories_file is None:
        out.append(
            WeightsFile(
                service="tagger",
                description="Places365 category names",
                target=_folder() / "categories_places365.txt",
                url=CATEGORIES_URL,
                env_var=f"{prefix}CATEGORIES_FILE",
            )
        )
    if settings.io_file is None:
        out.append(
            WeightsFile(
                service="tagger",
                description="Places365 indoor/outdoor labels",
                target=_folder() / "IO_places365.txt",
                url=IO_URL,
                env_var=f"{prefix}IO_FILE",
            )
        )
    return out


def weights_files(settings: ModelServiceSettings | None = None) -> list[WeightsFile]:
    """What ``ambience models fetch tagger`` downloads with these settings."""
    s = settings if isinstance(settings, TaggerSettings) else TaggerSettings()
    if s.weights == RANDOM or looks_like_path(s.weights):
        return label_files(s)
    return [checkpoint_file(s), *label_files(s)]


def ensure_file(wf: WeightsFile) -> Path:
    """A models-dir file: used when present, downloaded when allowed, else exit 2 with the fix."""
    if wf.present() is None and not CommonSettings().download_models:
        raise WeightsMissingError(
            f"tagger: {wf.target} ({wf.description}) is missing and downloads are off "
            f"(AMBIENCE_DOWNLOAD_MODELS=0). Fix: {wf.fix()}"
        )
    return fetch_weights(wf)


def local_file(path: Path, env_var: str) -> Path:
    if not path.is_file():
        raise WeightsMissingError(
            f"tagger: {path} (set by {env_var}) does not exist. Fix: point {env_var} at the file, or unset "
            "it and run `ambience models fetch tagger`"
        )
    return path


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

        def hub_file(tag: str) -> WeightsFile:
            if tag != DEFAULT_TAG:
                raise StartupError(f"tagger: unknown weights tag {tag!r} (known: {DEFAULT_TAG})")
            return checkpoint_file(s)

        weights = resolve_weights(s, hub_file, DEFAULT_TAG)
        prefix = s.env_prefix()
        defaults = {wf.target.name: wf for wf in label_files(TaggerSettings())}
        categories = (
            local_file(s.categories_file, f"{prefix}CATEGORIES_FILE")
            if s.categories_file
            else ensure_file(defaults["categories_places365.txt"])
        )
        io = (
            local_file(s.io_file, f"{prefix}IO_FILE")
            if s.io_file
            else ensure_file(defaults["IO_places365.txt"])
        )
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
    app = create_service_app(service)
    image_route(
        app,
        "/get_image_tags",
        service.tags,
        list[str],
        "Scene tags of the uploaded picture, best first, then 'indoor' or 'outdoor'.",
        service.settings.max_upload_bytes,
    )
    return app
