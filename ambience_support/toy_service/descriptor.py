"""The toy service's descriptor: all the rest of ambience needs to know about it."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="toy_thumbnail",
    port=1,
    extra="",  # the kit alone: no extra
    feature="ThumbnailFeature",
    module="ambience_support.toy_service",
)
