"""The image_text service's descriptor.

open_clip image/text embeddings: pictures matching a text, similar pictures.
"""

from services.common.descriptor import ServiceDescriptor
from services.common.models.spec import ModelSpec

#: The model: an open_clip model named by the ``model`` setting, weights by ``weights``, its HF
#: tokenizer (SigLIP 2) in the folder ``tokenizer`` names or the models dir.
MODEL = ModelSpec("open_clip", tokenizer_setting="tokenizer")

DESCRIPTOR = ServiceDescriptor(
    name="image_text",
    port=33338,
    extra="clip",
    feature="ImageTextFeature",
    # Its own module: the model code names it without importing the service wiring.
    settings="services.image_text.settings:ImageTextSettings",
    search="image_text_features",
    extra_routes=("/image_text_features_get_similar_images_by_text",),
    requires=("torch", "open_clip"),
    model=MODEL,
)
