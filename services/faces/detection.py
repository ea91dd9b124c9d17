"""Face detection with dlib: the HOG detector at the size that finds the smallest face kept, and
a slower pass only when it finds nothing.

dlib's frontal HOG detector scans an 80x80 window over an image pyramid (steps of 6/5); the
smallest box it reports is 73 px (measured). To find faces down to a minimum size ``m`` (pixels of
the analysed photo) the photo is resized by ``73 / m`` before detection: large photos shrink,
small ones grow, and faces below ``m`` are ignored. ``m`` is the larger of a fixed size and a
fraction of the photo's long side, so HOG never runs on more than ``73 / fraction`` pixels a side
(1460 px at 5%): a bounded cost per photo, whatever its resolution.

Only when that pass finds nothing does a slower one run (``fallback``): HOG on the detection image
upsampled once (4x the pixels), or dlib's MMOD CNN detector at a reduced size (it finds faces down
to 80 px boxes; it runs where a face of twice the minimum has 80 px, to keep its cost bounded).
Boxes of every pass below the minimum are dropped. Detections are ordered largest first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dlib
import numpy as np
from PIL import Image

#: The smallest box dlib's frontal HOG detector reports (its 80x80 window), in pixels.
HOG_MIN_BOX = 73.0
#: The smallest box dlib's MMOD CNN detector reports, in pixels (measured).
CNN_MIN_BOX = 80.0
#: The CNN pass looks for faces at least this many times the minimum (a quarter of the pixels).
CNN_FACE_FACTOR = 2.0

Fallback = Literal["none", "upsample", "cnn"]

#: Which pass found a face (stored with it).
PASS_HOG, PASS_UPSAMPLED, PASS_CNN = 0, 1, 2
PASS_NAMES = {PASS_HOG: "hog", PASS_UPSAMPLED: "hog-upsampled", PASS_CNN: "cnn"}


@dataclass(frozen=True)
class DetectionParams:
    #: Smallest face kept, in pixels of the analysed photo.
    min_face_size: float = 40.0
    #: ... and at least this fraction of the analysed photo's long side.
    min_face_fraction: float = 0.05
    #: HOG score threshold (dlib's adjust_threshold; 0 is dlib's default, higher keeps fewer).
    min_score: float = 0.0
    fallback: Fallback = "none"


@dataclass(frozen=True)
class Detection:
    #: left, top, right, bottom in pixels of the analysed photo (may reach past its edges).
    box: tuple[float, float, float, float]
    score: float
    found_by: int

    @property
    def size(self) -> float:
        """The box's side (dlib's boxes are square up to a pixel)."""
        left, top, right, bottom = self.box
        return float(min(right - left, bottom - top))


def minimum_face(size: tuple[int, int], params: DetectionParams) -> float:
    """The smallest face kept in a photo of ``size`` (pixels of the analysed photo)."""
    return max(params.min_face_size, params.min_face_fraction * max(size))


def resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    """``rgb`` scaled by ``scale`` (box filter down, bilinear up)."""
    if abs(scale - 1.0) < 1e-3:
        return rgb
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(rgb)
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(image.resize(size, method))


class FaceDetector:
    """dlib's HOG frontal face detector, and the CNN detector when it is the fallback."""

    def __init__(self, cnn_weights: Path | None = None) -> None:
        # dlib's detectors are not safe to call from two threads at once (two concurrent adds
        # crashed the process): a HOG detector per thread (cheap to make), the CNN under a lock.
        self._threads = threading.local()
        self.cnn = dlib.cnn_face_detection_model_v1(str(cnn_weights)) if cnn_weights else None
        self._cnn_lock = threading.Lock()

    @property
    def hog(self) -> Any:
        """This thread's HOG detector."""
        detector = getattr(self._threads, "hog", None)
        if detector is None:
            detector = self._threads.hog = dlib.get_frontal_face_detector()
        return detector

    def detect(self, rgb: np.ndarray, params: DetectionParams) -> list[Detection]:
        """Faces of at least the minimum size in an RGB uint8 photo, largest first."""
        found = self.hog_pass(rgb, params)
        if not found and params.fallback == "upsample":
            found = self.hog_pass(rgb, params, upsample=1)
        elif not found and params.fallback == "cnn":
            found = self.cnn_pass(rgb, params)
        return sorted(found, key=lambda d: (-d.size, -d.score))

    def hog_pass(self, rgb: np.ndarray, params: DetectionParams, upsample: int = 0) -> list[Detection]:
        """HOG on the photo resized so that the minimum face has HOG's smallest box (``upsample``:
        dlib doubles that image first)."""
        minimum = minimum_face((rgb.shape[1], rgb.shape[0]), params)
        scale = HOG_MIN_BOX / minimum
        found_by = PASS_UPSAMPLED if upsample else PASS_HOG
        boxes, scores, _ = self.hog.run(resized(rgb, scale), upsample, params.min_score)
        found = [_detection(box, score, scale, found_by) for box, score in zip(boxes, scores, strict=True)]
        return _at_least(found, minimum, scale)

    def cnn_pass(self, rgb: np.ndarray, params: DetectionParams) -> list[Detection]:
        """dlib's CNN on the photo resized so that a face of twice the minimum has its smallest box."""
        if self.cnn is None:
            raise RuntimeError("the CNN pass needs its weights: FaceDetector(cnn_weights)")
        minimum = minimum_face((rgb.shape[1], rgb.shape[0]), params)
        scale = CNN_MIN_BOX / (CNN_FACE_FACTOR * minimum)
        with self._cnn_lock:
            detected = self.cnn(resized(rgb, scale), 0)
        found = [_detection(d.rect, d.confidence, scale, PASS_CNN) for d in detected]
        return _at_least(found, minimum, scale)


def _at_least(found: list[Detection], minimum: float, scale: float) -> list[Detection]:
    """The detections of at least the minimum size (a box a pixel short of it is rounding: boxes
    are whole pixels of the scaled image)."""
    return [d for d in found if d.size >= minimum - 1.0 / scale]


def _detection(box: dlib.rectangle, score: float, scale: float, found_by: int) -> Detection:
    # dlib's right/bottom are inclusive pixel indices: the box ends one pixel further.
    edges = (box.left(), box.top(), box.right() + 1, box.bottom() + 1)
    return Detection(tuple(float(v) / scale for v in edges), float(score), found_by)  # type: ignore[arg-type]
