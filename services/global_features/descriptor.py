"""The global_features service's descriptor.

timm global vectors with PCA whitening: visually similar pictures.
"""

from services.common.descriptor import ServiceDescriptor
from services.common.models.spec import ModelSpec

#: The model: a timm model named by the ``model`` setting, weights by ``weights``.
MODEL = ModelSpec("timm")

DESCRIPTOR = ServiceDescriptor(
    name="global_features",
    port=33334,
    extra="global",
    feature="GlobalFeature",
    # Its own module: the model code names it without importing the service wiring.
    settings="services.global_features.settings:GlobalFeaturesSettings",
    train_route="/train_global_features_pca",
    requires=("torch", "timm"),
    model=MODEL,
)
