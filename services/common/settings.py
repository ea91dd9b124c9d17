"""Typed settings shared by every service.

Each service subclasses :class:`ServiceSettings` with its own env prefix
(``AMBIENCE_<SERVICE>_``). Values that all services share (where data and models
live, whether random weights are allowed) come from :class:`CommonSettings`
with the plain ``AMBIENCE_`` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from services.common.descriptor import ModelDeclaration, ServiceDescriptor


class CommonSettings(BaseSettings):
    """Settings shared by all services (env prefix ``AMBIENCE_``)."""

    model_config = SettingsConfigDict(env_prefix="AMBIENCE_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root folder; each service keeps data in a sub-folder")
    models_dir: Path = Field(Path("models"), description="Where model weights are downloaded and looked up")
    onnx_dir: Path | None = Field(
        None,
        description="Where runtime onnx keeps the image models it exports, a folder per service "
        "(unset: <models_dir>/<service>/onnx)",
    )
    allow_random_weights: bool = Field(
        False, description="Tests only: let model services run with random weights"
    )
    download_models: bool = Field(
        True, description="Model services download missing hub weights into models_dir at start-up"
    )


class ServiceSettings(BaseSettings):
    """Settings every service has. A subclass sets ``service_descriptor``, which names the service and
    gives its default port and env prefix (``AMBIENCE_<SERVICE>_``)."""

    model_config = SettingsConfigDict(extra="ignore")

    #: The service's descriptor (services/<service>/descriptor.py): a subclass that sets it gets
    #: its service name, default port and env prefix from it.
    service_descriptor: ClassVar[ServiceDescriptor | None] = None
    service_name: ClassVar[str] = "service"
    default_port: ClassVar[int] = 0
    #: The model the service runs: its descriptor's ``model`` (None: no model).
    model_spec: ClassVar[ModelDeclaration | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        descriptor = cls.__dict__.get("service_descriptor")
        if descriptor is not None:
            cls.service_name = descriptor.name
            cls.default_port = descriptor.port
            cls.model_config = {**cls.model_config, "env_prefix": descriptor.env_prefix}
            if "model_spec" not in cls.__dict__:
                cls.model_spec = descriptor.model

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 inside containers")
    port: int = Field(0, description="TCP port (0 = the service's default port)")
    data_dir: Path | None = Field(None, description="Data folder (default: $AMBIENCE_DATA_DIR/<service>)")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Largest accepted upload")
    max_pixels: int = Field(100_000_000, ge=1, description="Largest accepted image (width x height)")
    min_side: int = Field(8, ge=1, description="Smallest accepted image side in pixels")
    decode_budget_mb: int = Field(
        1024,
        ge=1,
        description="Memory for images being decoded at once (MiB); past it, uploads get 503 with "
        "Retry-After (one image alone is always decoded)",
    )
    video_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Time one video upload may take to be opened, probed, seeked and decoded into its "
        "representative frame; past it, 422",
    )
    max_json_bytes: int = Field(65536, ge=1, description="Largest accepted JSON request body")
    max_k: int = Field(
        1000, ge=1, description="Largest k a search may ask for; threshold searches return at most this many"
    )
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="Seconds between index snapshots (only when something changed)"
    )
    sync_interval_s: float = Field(
        1.0, gt=0, description="Seconds between checks for records written by other processes"
    )
    search_threads: int = Field(
        1, ge=1, description="FAISS threads per search; requests already run concurrently"
    )
    store: Literal["lmdb", "postgres"] = Field(
        "lmdb",
        description="Where features are kept: lmdb (a file in data_dir, one machine) or postgres "
        "(AMBIENCE_PG_* server, shared by replicas on many hosts)",
    )
    analysis_wait_s: float = Field(
        2.0,
        ge=0,
        description="/analysis/*: seconds a request waits for a computation before answering 202 "
        "(or the previous result)",
    )
    analysis_dim: int = Field(
        64, ge=2, description="/analysis/*: rows are clustered after PCA to this many dimensions"
    )
    map_landmarks: int = Field(
        1000, ge=2, description="/analysis/map: t-SNE runs over at most this many k-means centroids"
    )
    map_refit_fraction: float = Field(
        0.2,
        ge=0,
        description="/analysis/map: refit when this fraction of images was added or deleted since the "
        "last fit (fewer: new images are placed on the cached map)",
    )

    def resolved_port(self) -> int:
        return self.port or self.default_port

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        return CommonSettings().data_dir / self.service_name

    @classmethod
    def env_prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Rows for the README settings table: env var, default, description."""
        return settings_rows(
            cls, {"port": cls.default_port, "data_dir": f"$AMBIENCE_DATA_DIR/{cls.service_name}"}
        )


def settings_rows(cls: type[BaseSettings], shown: Mapping[str, object] | None = None) -> list[dict[str, Any]]:
    """The settings of ``cls`` as rows (env var, default, description). ``shown`` names what a
    default resolved at run time means (``{"data_dir": "$AMBIENCE_DATA_DIR/gateway"}``); a field
    read under an alias (``AliasChoices("AMBIENCE_API_KEY", ...)``) is listed under the first."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    shown = shown or {}
    rows = []
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{name.upper()}"
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        rows.append({"env": env, "default": shown.get(name, default), "description": field.description or ""})
    return rows


def markdown_table(classes: list[type[BaseSettings]]) -> str:
    """The settings of ``classes`` as one markdown table (env var, default, meaning)."""
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    seen: set[str] = set()
    for cls in classes:
        rows = cls.describe() if hasattr(cls, "describe") else settings_rows(cls)
        for row in rows:
            if row["env"] in seen:
                continue
            seen.add(row["env"])
            default = row["default"]
            shown = "" if default is None else f"`{default}`"
            lines.append(f"| `{row['env']}` | {shown} | {row['description']} |")
    return "\n".join(lines)
