"""The local_features service's descriptor.

SIFT keypoints + HardNet8/RootSIFT, verified matches: crops and partial copies.
"""

from services.common.descriptor import ServiceDescriptor
from services.common.models.spec import KnownFile, ModelSpec

#: HardNet8's weights: kornia's pretrained hardnet8v2 from kornia's own sources
#: (kornia.feature.hardnet.urls["hardnet8v2"]): its Hugging Face repo, then the CMP mirror. Only
#: the hardnet8 descriptor needs them; "kornia" (or '') names them.
MODEL = ModelSpec(
    "kornia",
    model_setting="",
    weights_setting="hardnet_weights",
    default_tag="kornia",
    tags=(
        KnownFile(
            "kornia",
            "kornia HardNet8 (hardnet8v2)",
            "hardnet8v2.pt",
            url="https://cmp.felk.cvut.cz/~mishkdmy/hardnet8v2.pt",
            hf_repo="kornia/hardnet",
            hf_filenames=("hardnet8v2.pt",),
        ),
    ),
    only_when=("descriptor", "hardnet8"),
)

DESCRIPTOR = ServiceDescriptor(
    name="local_features",
    port=33333,
    extra="local",
    feature="LocalFeatures",
    train_route="/train_local_features_index",
    requires=("cv2", "torch", "kornia"),
    model=MODEL,
)
