"""The image-text service's settings: one typed object, read from ``AMBIENCE_IMAGE_TEXT_*``.

Its own module so the model code (model.py, onnx_session.py) can name it without importing the
service's wiring.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.models.embedding import EmbeddingSettings
from services.common.models.inference import RuntimeName, runtime_field
from services.common.models.spec import weights_field
from services.image_text.descriptor import DESCRIPTOR


class ImageTextSettings(EmbeddingSettings):
    service_descriptor = DESCRIPTOR

    #: ONNX Runtime from a cached export: no torch in the serving process, and measured faster
    #: than eager on CPU (docs/models.md, "Image-model runtimes").
    cpu_runtime: ClassVar[str] = "onnx"
    runtime: RuntimeName = runtime_field("onnx")
    model: str = Field(
        "ViT-B-32-SigLIP2-256",
        description="open_clip model name (ViT-B-32-SigLIP2-256; ViT-B-16-SigLIP2: better, twice the cost "
        "per image; ViT-B-16 with weights openai: the former default)",
    )
    weights: str = weights_field(
        "webli", "open_clip pretrained tag for the model (e.g. webli, openai, laion2b_s34b_b88k)"
    )
    tokenizer: str = Field(
        "",
        description="Folder holding the model's tokenizer.json (models whose open_clip config names a "
        "Hugging Face tokenizer, such as SigLIP 2); '' = $AMBIENCE_MODELS_DIR/image_text/tokenizers/<name>, "
        "fetched with the weights",
    )
    text_idle_s: float = Field(
        300.0,
        ge=0,
        description="The text tower and tokenizer are loaded on the first text query and released after "
        "this many seconds without one (0 = kept once loaded)",
    )
    quick_gelu: bool = Field(
        False,
        description="Build the QuickGELU variant (OpenAI weights loaded from a local file need it; "
        "hub tags set it themselves)",
    )
    model_config_path: str = Field(
        "", description="Extra open_clip model config JSON (file or folder) registered before building"
    )
