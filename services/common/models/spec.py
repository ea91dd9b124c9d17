"""What a model service declares: its settings (:class:`ModelServiceSettings`) and its model spec.

A :class:`ModelSpec` is plain data (no heavy imports): the architecture family, which settings hold
the model name and the weights, the default tag, and, for families without a hub catalogue
(torchvision, kornia), the files the service knows by tag. The weights files a service needs
(``ambience models fetch``) and the weights its session loads both derive from it::

    DESCRIPTOR = ServiceDescriptor(name="global_features", ..., model=ModelSpec("timm"))

    class GlobalFeaturesSettings(ModelServiceSettings):
        service_descriptor = DESCRIPTOR    # settings.model_spec is DESCRIPTOR.model

    spec.weights_files(settings)   # what `ambience models fetch global_features` downloads
    spec.resolve(settings)         # ResolvedWeights for the session (downloaded when allowed)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from services.common.errors import StartupError, WeightsMissingError
from services.common.models.inference import RuntimeName, runtime_field
from services.common.models.open_clip_loader import (
    hf_tokenizer_name,
    open_clip_tokenizer_files,
    open_clip_weights_file,
    tokenizer_folder,
)
from services.common.models.timm_loader import timm_weights_file
from services.common.models.weights import (
    ResolvedWeights,
    WeightsFile,
    ensure_weights_file,
    names_hub_weights,
    resolve_weights_value,
)
from services.common.settings import CommonSettings, ServiceSettings

Family = Literal["timm", "open_clip", "torchvision", "kornia"]


@dataclass(frozen=True)
class KnownFile:
    """A file a service knows by name, stored as ``<models_dir>/<service>/<filename>``: a weights tag
    of a family without a hub catalogue, or a companion file (e.g. a label list)."""

    #: The weights tag, or for a companion the setting that points at a local copy instead.
    name: str
    description: str
    filename: str
    url: str = ""
    hf_repo: str = ""
    hf_filenames: tuple[str, ...] = ()
    sha256: str = ""

    def weights_file(self, service: str, models_dir: Path, env_var: str) -> WeightsFile:
        return WeightsFile(
            service=service,
            description=self.description,
            target=models_dir / service / self.filename,
            hf_repo=self.hf_repo,
            hf_filenames=self.hf_filenames,
            url=self.url,
            sha256=self.sha256,
            env_var=env_var,
        )


@dataclass(frozen=True)
class ModelSpec:
    """The model a service runs, as data; see the module docstring."""

    family: Family
    #: The setting holding the model (architecture) name; '' when the family has one fixed model.
    model_setting: str = "model"
    #: The setting holding the weights ('' = default tag, a tag, a local file, or 'random').
    weights_setting: str = "weights"
    #: The tag an empty weights setting means ('' = the hub's default for the model).
    default_tag: str = ""
    #: Weights the service knows by tag (torchvision, kornia: no hub catalogue to ask).
    tags: tuple[KnownFile, ...] = ()
    #: Files needed beside the weights, unless their setting (``KnownFile.name``) names a local file.
    companions: tuple[KnownFile, ...] = ()
    #: ``(setting, value)``: the model only runs while that setting has that value (else no weights).
    only_when: tuple[str, str] | None = None
    #: open_clip: the setting naming a local folder with the model's HF tokenizer ('' = none; models
    #: whose config names no HF tokenizer need none either way).
    tokenizer_setting: str = ""

    def env_var(self, settings: ServiceSettings, setting: str = "") -> str:
        return f"{settings.env_prefix()}{(setting or self.weights_setting).upper()}"

    def model_name(self, settings: ServiceSettings) -> str:
        return str(getattr(settings, self.model_setting)) if self.model_setting else ""

    def weights_value(self, settings: ServiceSettings) -> str:
        return str(getattr(settings, self.weights_setting)).strip()

    def active(self, settings: ServiceSettings) -> bool:
        if self.only_when is None:
            return True
        setting, value = self.only_when
        return bool(getattr(settings, setting) == value)

    def hub_file(self, settings: ServiceSettings, tag: str) -> WeightsFile:
        """The file hub tag ``tag`` ('' = the default) names for these settings."""
        service, env_var = settings.service_name, self.env_var(settings)
        models_dir = CommonSettings().models_dir
        tag = tag or self.default_tag
        if self.family == "timm":
            return timm_weights_file(service, self.model_name(settings), tag, models_dir, env_var)
        if self.family == "open_clip":
            return open_clip_weights_file(service, self.model_name(settings), tag, models_dir, env_var)
        for known in self.tags:
            if known.name == tag:
                return known.weights_file(service, models_dir, env_var)
        names = ", ".join(repr(known.name) for known in self.tags) or "none"
        raise StartupError(
            f"{service}: {env_var}={tag!r} is neither a known weights tag ({names}), 'random' nor a file "
            "path (a path needs a '/' or a checkpoint suffix such as .pt/.pth)"
        )

    def resolve(self, settings: ServiceSettings) -> ResolvedWeights:
        """The weights the service's session loads; hub weights are downloaded when allowed.

        Raises WeightsMissingError (exit 2) when none can be had, StartupError for bad settings."""
        return resolve_weights_value(
            settings.service_name,
            self.env_var(settings),
            self.weights_value(settings),
            lambda tag: self.hub_file(settings, tag),
            self.default_tag,
        )

    def companion_files(self, settings: ServiceSettings) -> list[WeightsFile]:
        """The companion files to keep in the models dir (those not set to local files)."""
        models_dir = CommonSettings().models_dir
        return [
            known.weights_file(settings.service_name, models_dir, self.env_var(settings, known.name))
            for known in self.companions
            if getattr(settings, known.name) is None
        ]

    def companion(self, settings: ServiceSettings, name: str) -> Path:
        """Companion ``name``: the local file its setting names, else the models-dir copy (downloaded
        when allowed); WeightsFile's exit-2 refusal when neither can be had."""
        env_var = self.env_var(settings, name)
        local = getattr(settings, name)
        if local is not None:
            path = Path(local)
            if not path.is_file():
                raise WeightsMissingError(
                    f"{settings.service_name}: {path} (set by {env_var}) does not exist. Fix: point "
                    f"{env_var} at the file, or unset it and run "
                    f"`ambience models fetch {settings.service_name}`"
                )
            return path
        (known,) = (known for known in self.companions if known.name == name)
        return ensure_weights_file(
            known.weights_file(settings.service_name, CommonSettings().models_dir, env_var)
        )

    def tokenizer_files(self, settings: ServiceSettings) -> list[WeightsFile]:
        """The model's HF tokenizer files in the models dir (none when the model has no HF
        tokenizer or the tokenizer setting names a local folder)."""
        if self.family != "open_clip" or not self.tokenizer_setting:
            return []
        if str(getattr(settings, self.tokenizer_setting)).strip():
            return []
        return open_clip_tokenizer_files(
            settings.service_name,
            self.model_name(settings),
            CommonSettings().models_dir,
            self.env_var(settings, self.tokenizer_setting),
        )

    def tokenizer_folder(self, settings: ServiceSettings) -> Path | None:
        """The folder the model's HF tokenizer is read from (None: the model needs none): the local
        folder the tokenizer setting names, else the models-dir copy (downloaded when allowed);
        WeightsMissingError (exit 2) naming the fix when neither is there."""
        name = hf_tokenizer_name(self.model_name(settings))
        if not name or not self.tokenizer_setting:
            return None
        env_var = self.env_var(settings, self.tokenizer_setting)
        local = str(getattr(settings, self.tokenizer_setting)).strip()
        if local:
            folder = Path(local).expanduser()
            if not (folder / "tokenizer.json").is_file():
                raise WeightsMissingError(
                    f"{settings.service_name}: {folder / 'tokenizer.json'} (set by {env_var}) does not "
                    "exist. "
                    f"Fix: point {env_var} at a folder holding the {name} tokenizer files, or unset it and "
                    f"run `ambience models fetch {settings.service_name}`"
                )
            return folder
        for wf in self.tokenizer_files(settings):
            ensure_weights_file(wf)
        return tokenizer_folder(settings.service_name, name, CommonSettings().models_dir)

    def weights_files(self, settings: ServiceSettings) -> list[WeightsFile]:
        """What ``ambience models fetch <service>`` downloads with these settings: nothing for a
        model not in use; no weights for a local file or random weights; companions and the
        tokenizer unless local."""
        if not self.active(settings):
            return []
        value = self.weights_value(settings)
        weights = [self.hub_file(settings, value)] if names_hub_weights(value) else []
        return [*weights, *self.companion_files(settings), *self.tokenizer_files(settings)]


def weights_field(default: str, sources: str) -> Any:
    """A ``weights`` setting: ``sources`` (what else a value may name), a local checkpoint file, or
    random weights, which only tests may use."""
    return Field(
        default,
        description=f"{sources}, a local checkpoint file, or 'random' (tests only, needs "
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS=1)",
    )


class ModelServiceSettings(ServiceSettings):
    """Settings every model service has (subclasses override the defaults and set the descriptor,
    whose model spec becomes ``model_spec``)."""

    #: The model the service runs: its descriptor's ``model`` (always a ModelSpec).
    model_spec: ClassVar[ModelSpec | None] = None  # type: ignore[assignment]

    model: str = Field("", description="Model architecture name (timm / open_clip name)")
    weights: str = weights_field("", "'' = the model's default pretrained tag, a hub tag")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    max_batch: int = Field(32, ge=1, description="Most images one forward pass takes (micro-batching)")
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a forward pass waits for more requests to join its batch (0: only those "
        "already waiting are batched, no added latency)",
    )
    torch_threads: int = Field(
        1,
        ge=0,
        description="CPU threads per forward pass for torch (0 = torch's default, one per core; 1: the "
        "services share the cores and requests already run side by side)",
    )
    runtime: RuntimeName = runtime_field()
    #: What ``runtime=auto`` means on CPU for this service (measured: docs/models.md).
    cpu_runtime: ClassVar[str] = "eager"

    def weights_env_var(self) -> str:
        return f"{self.env_prefix()}WEIGHTS"
