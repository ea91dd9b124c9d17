"""The color service's descriptor. 8x8x8 RGB histogram: pictures with a similar palette."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="color",
    port=33335,
    extra="color",
    settings="services.color.service:ColorSettings",
    feature="services.color.service:ColorFeature",
    store="color_features",
    search="color",
    requires=("cv2",),
)
