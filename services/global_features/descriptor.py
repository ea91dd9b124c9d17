"""The global_features service's descriptor.

timm global vectors with PCA whitening: visually similar pictures.
"""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="global_features",
    port=33334,
    extra="global",
    settings="services.global_features.service:GlobalFeaturesSettings",
    feature="services.global_features.service:GlobalFeature",
    app="services.global_features.service:build_app",
    store="global_features",
    search="global_features",
    train_route="/train_global_features_pca",
    requires=("torch", "timm"),
    weights="services.global_features.service:weights_files",
)
