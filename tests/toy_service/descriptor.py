"""The toy service's descriptor: all the rest of ambience needs to know about it."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="toy_thumbnail",
    port=1,
    extra="",  # the kit alone: no extra
    settings="tests.toy_service.service:ToySettings",
    feature="tests.toy_service.service:ThumbnailFeature",
    store="toy_thumbnail_features",
    search="toy_thumbnail",
    module="tests.toy_service",
)
