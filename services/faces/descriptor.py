"""The faces service's descriptor.

Faces found by dlib's HOG detector, aligned with its 5-point landmarks and described by its 128-d
ResNet (weights from the face_recognition_models package, no download); several rows per image.
"""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="faces",
    port=33342,
    extra="faces",
    feature="FacesFeature",
    # Its own module: the model code names it without importing the service wiring.
    settings="services.faces.settings:FacesSettings",
    extra_routes=(
        "/faces_of_image",
        "/faces_search_faces_by_image_buffer",
        "/faces_search_faces_by_id",
        "/faces_descriptors",
        "/faces_changes",
    ),
    # find_spec locates face_recognition_models without importing it (its __init__ needs
    # pkg_resources, which setuptools 82+ no longer ships).
    requires=("dlib", "face_recognition_models"),
    # The weights ship in a package; `ambience models list` shows where (services/faces/weights.py).
    weights="services.faces.weights:weights_files",
)
