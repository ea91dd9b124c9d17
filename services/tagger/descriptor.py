"""The tagger service's descriptor. Places365 scene tags and indoor/outdoor (stores nothing)."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="tagger",
    port=33341,
    extra="tags",
    settings="services.tagger.service:TaggerSettings",
    app="services.tagger.service:build_app",
    extra_routes=("/get_image_tags",),
    requires=("torch", "torchvision"),
    weights="services.tagger.service:weights_files",
)
