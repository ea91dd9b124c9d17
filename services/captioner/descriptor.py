"""The captioner service's descriptor.

open_clip CoCa: a one-sentence caption of a picture (stores nothing).
"""

from services.common.descriptor import ServiceDescriptor
from services.common.models.spec import ModelSpec

#: The model: an open_clip model named by the ``model`` setting, weights by ``weights``.
MODEL = ModelSpec("open_clip")

DESCRIPTOR = ServiceDescriptor(
    name="captioner",
    port=33340,
    extra="caption",
    extra_routes=("/get_image_caption",),
    requires=("torch", "open_clip"),
    model=MODEL,
)
