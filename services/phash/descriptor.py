"""The phash service's descriptor. 576-bit DCT perceptual hash: near-duplicates by Hamming distance."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="phash",
    port=33336,
    extra="phash",
    feature="PhashFeature",
)
