"""The color service's descriptor. 8x8x8 RGB histogram: pictures with a similar palette."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="color",
    port=33335,
    extra="color",
    feature="ColorFeature",
    requires=("cv2",),
)
