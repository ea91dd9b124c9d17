"""Model specs: the weights files and the session weights a service's declared spec derives."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from services.common.errors import StartupError, WeightsMissingError
from services.common.models.open_clip_loader import open_clip_build, register_model_configs
from services.common.models.spec import KnownFile, ModelSpec
from services.common.models.weights import ResolvedWeights
from services.common.settings import ServiceSettings
from services.registry import SERVICES

TOY_MODEL = ModelSpec(
    "torchvision",
    model_setting="",
    weights_setting="toy_weights",
    default_tag="base",
    tags=(
        KnownFile("base", "toy base checkpoint", "toy-base.pth", url="https://example.invalid/toy-base.pth"),
    ),
    companions=(
        KnownFile("labels_file", "toy labels", "labels.txt", url="https://example.invalid/labels.txt"),
    ),
    only_when=("backbone", "toy"),
)


class ToySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AMBIENCE_TOY_", extra="ignore")
    service_name: ClassVar[str] = "toy"
    model_spec: ClassVar[ModelSpec] = TOY_MODEL

    backbone: str = "toy"
    toy_weights: str = ""
    labels_file: Path | None = None


def test_every_model_service_loads_the_spec_its_descriptor_declares() -> None:
    for name, info in SERVICES.items():
        assert getattr(info.settings_class(), "model_spec", None) is info.model, name
    assert {n for n, info in SERVICES.items() if info.model} == {
        "global_features",
        "image_text",
        "captioner",
        "tagger",
        "local_features",
    }


def test_known_tags_and_companions_become_models_dir_files(offline_models: Path, tmp_path: Path) -> None:
    settings = ToySettings()
    files = TOY_MODEL.weights_files(settings)
    assert [f.target for f in files] == [
        offline_models / "toy" / "toy-base.pth",
        offline_models / "toy" / "labels.txt",
    ]
    assert [f.env_var for f in files] == ["AMBIENCE_TOY_TOY_WEIGHTS", "AMBIENCE_TOY_LABELS_FILE"]
    assert all("ambience models fetch toy" in f.fix() for f in files)
    # A local or random checkpoint needs no download; a local label file neither.
    labels = tmp_path / "labels.txt"
    labels.write_text("a\n")
    local = ToySettings(toy_weights=str(tmp_path / "mine.pth"), labels_file=labels)
    assert TOY_MODEL.weights_files(local) == []
    assert [f.target.name for f in TOY_MODEL.weights_files(ToySettings(toy_weights="random"))] == [
        "labels.txt"
    ]
    assert TOY_MODEL.companion(local, "labels_file") == labels
    # A setting that switches the model off needs nothing at all.
    assert TOY_MODEL.weights_files(ToySettings(backbone="other")) == []


def test_an_unknown_tag_is_refused_naming_the_known_ones(offline_models: Path) -> None:
    with pytest.raises(StartupError, match=r"AMBIENCE_TOY_TOY_WEIGHTS='large'.*'base'"):
        TOY_MODEL.weights_files(ToySettings(toy_weights="large"))


def test_missing_files_refuse_with_exit_2_naming_the_fix(offline_models: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"toy-base\.pth.*ambience models fetch toy") as info:
        TOY_MODEL.resolve(ToySettings())
    assert info.value.exit_code == 2
    with pytest.raises(WeightsMissingError, match=r"labels\.txt.*AMBIENCE_DOWNLOAD_MODELS=0"):
        TOY_MODEL.companion(ToySettings(), "labels_file")
    with pytest.raises(WeightsMissingError, match=r"nope\.txt \(set by AMBIENCE_TOY_LABELS_FILE\)"):
        TOY_MODEL.companion(ToySettings(labels_file=tmp_path / "nope.txt"), "labels_file")


def test_a_known_tag_on_disk_resolves_with_its_digest(offline_models: Path) -> None:
    target = offline_models / "toy" / "toy-base.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"pretend checkpoint")
    weights = TOY_MODEL.resolve(ToySettings(toy_weights="base"))
    assert weights.kind == "hub" and weights.path == target and len(weights.digest) == 64


def test_open_clip_hub_tags_bring_their_build_options() -> None:
    hub = ResolvedWeights("hub", Path("x"), "d", "open_clip ViT-B-16 / openai")
    build = open_clip_build("ViT-B-16", "openai", hub)
    assert build.quick_gelu and build.preprocess is not None and "mean" in build.preprocess
    # A local file or random weights keep the model config and the setting.
    local = ResolvedWeights("file", Path("x"), "d", "x")
    assert open_clip_build("ViT-B-16", "openai", local, quick_gelu=False).quick_gelu is False
    assert open_clip_build("ViT-B-16", "openai", local).preprocess is None


def test_a_missing_model_config_is_refused_naming_the_service(tmp_path: Path) -> None:
    register_model_configs("captioner", "")  # none configured: nothing to do
    with pytest.raises(StartupError, match=r"captioner: model_config_path .*nope\.json does not exist"):
        register_model_configs("captioner", str(tmp_path / "nope.json"))
