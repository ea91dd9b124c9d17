"""The captioner service's descriptor.

open_clip CoCa: a one-sentence caption of a picture (stores nothing).
"""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="captioner",
    port=33340,
    extra="caption",
    settings="services.captioner.service:CaptionerSettings",
    app="services.captioner.service:build_app",
    extra_routes=("/get_image_caption",),
    requires=("torch", "open_clip"),
    weights="services.captioner.service:weights_files",
)
