"""Where the faces service finds its dlib weights: the installed ``face_recognition_models``
package (``pip install face_recognition_models``, part of the ``faces`` extra), or a folder named
by ``AMBIENCE_FACES_WEIGHTS_DIR``. Nothing is downloaded.

The package is located with ``importlib.util.find_spec`` and never imported: its ``__init__``
imports ``pkg_resources``, which setuptools 82+ no longer ships. Its 68-point landmark model is
never used (its licence excludes commercial use); the 5-point model is enough for alignment.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from services.common.errors import WeightsMissingError
from services.common.models.weights import WeightsFile

PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
ENV_VAR = "AMBIENCE_FACES_WEIGHTS_DIR"

_DESCRIPTIONS = {
    SHAPE_PREDICTOR: "dlib 5-point face landmarks",
    RESNET: "dlib ResNet face descriptor (128-d)",
    CNN_DETECTOR: "dlib MMOD CNN face detector",
}


def package_models_dir() -> Path | None:
    """The ``models`` folder of the installed face_recognition_models package, None without it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models"


def models_dir(weights_dir: str) -> Path:
    """The folder the weights are read from: ``weights_dir`` when set, else the package's."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    found = package_models_dir()
    if found is None:
        raise WeightsMissingError(
            f"faces: the dlib weights come from the {PACKAGE} package, which is not installed. Fix: "
            f"pip install -e '.[faces]' (or pip install {PACKAGE}), or set {ENV_VAR} to a folder "
            f"holding {SHAPE_PREDICTOR} and {RESNET}"
        )
    return found


def needed_files(fallback: str) -> list[str]:
    """The weights files the settings need (the CNN detector only as the fallback detector)."""
    return [SHAPE_PREDICTOR, RESNET, *([CNN_DETECTOR] if fallback == "cnn" else [])]


def weights_files(settings: Any = None) -> list[WeightsFile]:
    """What ``ambience models list faces`` shows: each file and whether it is in place."""
    if settings is None:
        from services.faces.settings import FacesSettings

        settings = FacesSettings()
    folder = models_dir(settings.weights_dir) if settings.weights_dir else package_models_dir()
    if folder is None:
        folder = Path(f"<{PACKAGE} not installed>")
    source = ENV_VAR if settings.weights_dir else PACKAGE
    return [
        WeightsFile(
            service="faces",
            description=f"{_DESCRIPTIONS[name]} ({source})",
            target=folder / name,
            env_var=ENV_VAR,
        )
        for name in needed_files(settings.fallback)
    ]


def resolve(weights_dir: str, fallback: str) -> dict[str, Path]:
    """Each needed file's path; WeightsMissingError (exit 2) naming the fix when one is missing."""
    folder = models_dir(weights_dir)
    paths = {name: folder / name for name in needed_files(fallback)}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        where = f"{ENV_VAR}={weights_dir}" if weights_dir else f"the {PACKAGE} package"
        raise WeightsMissingError(
            f"faces: weights file(s) {', '.join(missing)} missing from {where}. Fix: "
            f"pip install --force-reinstall {PACKAGE}, or point {ENV_VAR} at a folder holding them"
        )
    return paths


def digest(paths: list[Path]) -> str:
    """sha256 over the files' contents, in order (the store records it: other weights refuse)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
