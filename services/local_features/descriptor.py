"""The local_features service's descriptor.

SIFT keypoints + HardNet8/RootSIFT, verified matches: crops and partial copies.
"""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="local_features",
    port=33333,
    extra="local",
    settings="services.local_features.service:LocalFeaturesSettings",
    feature="services.local_features.service:LocalFeatures",
    app="services.local_features.service:build_app",
    store="local_features",
    search="local_features",
    train_route="/train_local_features_index",
    requires=("cv2", "torch", "kornia"),
    weights="services.local_features.service:weights_files",
)
