"""The global features service's settings: one typed object, read from ``AMBIENCE_GLOBAL_FEATURES_*``.

Its own module so the model code (model.py, run in the ONNX export child) can name it without
importing the service's wiring.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from services.common.models.embedding import EmbeddingSettings
from services.common.models.inference import RuntimeName, runtime_field
from services.global_features.descriptor import DESCRIPTOR

DEFAULT_MODEL = "beit_base_patch16_224.in22k_ft_in22k"


class GlobalFeaturesSettings(EmbeddingSettings):
    service_descriptor = DESCRIPTOR

    #: ONNX Runtime from a cached export: no torch in the serving process, and measured faster
    #: than eager on CPU (docs/models.md, "Image-model runtimes").
    cpu_runtime: ClassVar[str] = "onnx"
    runtime: RuntimeName = runtime_field("onnx")
    model: str = Field(DEFAULT_MODEL, description="timm model name (optionally with a pretrained tag)")
    aqe_n: int = Field(
        2,
        ge=0,
        le=100,
        description="alpha query expansion by default: how many top results are folded into the query "
        "(0 = off; a request's aqe_n overrides it). 2: +0.018 same-class precision@10 on caltech101-dev, "
        "no cost on copies",
    )
    pooling: Literal["model", "token", "avg", "token_avg"] = Field(
        "model",
        description="'model' = the model's own pooled features; ViTs (DINOv2): 'token' class token, "
        "'avg' mean of the patch tokens, 'token_avg' both concatenated",
    )
    mirrored_query: bool = Field(
        False,
        description="Queries also search with the mirrored image (pooled CNN/ViT vectors already find "
        "mirrored copies; this doubles query cost)",
    )
    index_factory: str = Field(
        "",
        description="'' = exact flat index; else a FAISS factory string (e.g. 'IVF1024,SQ8' or "
        "'IVF1024,PQ64np') for a compressed index, trained by POST /train_global_features_pca "
        "(flat until then)",
    )
    nprobe: int = Field(16, ge=1, description="IVF lists visited per search (compressed index only)")
    pca_dim: int = Field(
        0, ge=0, description="Whitened dimension (0 = chosen from the data: pca_energy, pca_per_vector)"
    )
    pca_energy: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Dimension from the data: the leading directions explaining this share of the variance",
    )
    pca_per_vector: float = Field(
        0.1, gt=0, le=1, description="Dimension from the data: at most this many per training vector"
    )
    pca_power: float = Field(
        0.1, ge=0, le=1, description="Whitening strength: eigenvalue ** -power (0.5 full, 0 plain PCA)"
    )
    pca_min_images: int = Field(
        500, ge=2, description="Fewest stored images training accepts (the self-check holds some back)"
    )
    pca_max_train: int = Field(
        200_000, ge=2, description="Training uses a random sample of at most this many"
    )
