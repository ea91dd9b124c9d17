"""The tagger service's descriptor. Places365 scene tags and indoor/outdoor (stores nothing)."""

from services.common.descriptor import ServiceDescriptor
from services.common.models.spec import KnownFile, ModelSpec

#: CSAIL's published files (https://github.com/CSAILVision/places365).
CHECKPOINT_URL = "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar"
CATEGORIES_URL = "https://raw.githubusercontent.com/CSAILVision/places365/master/categories_places365.txt"
IO_URL = "https://raw.githubusercontent.com/CSAILVision/places365/master/IO_places365.txt"
DEFAULT_TAG = "places365"
#: The model: CSAIL's ResNet50 (torchvision), weights by tag, and the two label files beside them.
MODEL = ModelSpec(
    "torchvision",
    default_tag=DEFAULT_TAG,
    tags=(
        KnownFile(
            DEFAULT_TAG, "CSAIL ResNet50 Places365 checkpoint", "resnet50_places365.pth.tar", CHECKPOINT_URL
        ),
    ),
    companions=(
        KnownFile("categories_file", "Places365 category names", "categories_places365.txt", CATEGORIES_URL),
        KnownFile("io_file", "Places365 indoor/outdoor labels", "IO_places365.txt", IO_URL),
    ),
)

DESCRIPTOR = ServiceDescriptor(
    name="tagger",
    port=33341,
    extra="tags",
    extra_routes=("/get_image_tags",),
    requires=("torch", "torchvision"),
    model=MODEL,
)
