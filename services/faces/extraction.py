"""The faces of one photo, and their compact stored encoding.

Pipeline: the photo decoded with its long side at most ``max_side`` (the analysed photo), faces
detected there (detection.py), largest first, at most ``max_faces``; 5-point landmarks and the 128-d
descriptor of each (descriptors.py), a batch at a time until the per-photo time budget runs out.
Boxes and landmarks are stored in pixels of the full photo (EXIF orientation applied), so a client
can draw them on any rendition of it.

Stored record (one per image, little-endian; an image without faces stores the header alone):
    header      "<BBHHIIHH": version, flags, n faces stored, faces found (of at least the minimum
                size, before the cap and the time budget), full width, full height, analysed
                width, analysed height
    boxes       n x 4 float32 left, top, right, bottom
    landmarks   n x 5 x 2 float32 (dlib's 5 points: two corners of each eye, the base of the nose)
    scores      n float32 detector scores
    found_by    n uint8 (0 HOG, 1 HOG upsampled, 2 CNN)
    descriptors n x 128 float32
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from services.faces.descriptors import DIM, LANDMARKS, FaceDescriber, landmark_points
from services.faces.detection import DetectionParams, FaceDetector

RECORD_VERSION = 1
_HEADER = struct.Struct("<BBHHIIHH")
#: FAISS ids are image_id << ID_SHIFT | face index (as local features do with keypoints).
ID_SHIFT = 10
MAX_FACES = (1 << ID_SHIFT) - 1
#: Header flags.
CAPPED = 1  # more faces were found than max_faces
OUT_OF_TIME = 2  # the time budget ran out before every kept face had its descriptor


@dataclass(frozen=True)
class AnalysisParams:
    detection: DetectionParams = field(default_factory=DetectionParams)
    max_faces: int = 100
    batch: int = 8
    time_budget_s: float = 10.0


@dataclass
class ImageFaces:
    """The faces of one photo; coordinates in pixels of the full photo."""

    boxes: np.ndarray  # (n, 4) float32
    landmarks: np.ndarray  # (n, 5, 2) float32
    scores: np.ndarray  # (n,) float32
    found_by: np.ndarray  # (n,) uint8
    descriptors: np.ndarray  # (n, 128) float32
    found: int
    size: tuple[int, int]
    analysed_size: tuple[int, int]
    flags: int = 0

    def __len__(self) -> int:
        return len(self.descriptors)

    @staticmethod
    def empty(size: tuple[int, int], analysed_size: tuple[int, int]) -> ImageFaces:
        return ImageFaces(
            np.zeros((0, 4), np.float32),
            np.zeros((0, LANDMARKS, 2), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.uint8),
            np.zeros((0, DIM), np.float32),
            0,
            size,
            analysed_size,
        )


def analyse(
    rgb: np.ndarray,
    full_size: tuple[int, int],
    detector: FaceDetector,
    describer: FaceDescriber,
    params: AnalysisParams,
    started: float | None = None,
) -> ImageFaces:
    """The faces of an analysed photo (RGB uint8) whose full size is ``full_size``. The time budget
    counts from ``started`` (a ``time.monotonic()`` value; default now), so decoding counts too."""
    started = time.monotonic() if started is None else started
    height, width = rgb.shape[:2]
    detections = detector.detect(rgb, params.detection)
    found = len(detections)
    kept = detections[: params.max_faces]
    if not kept:
        faces = ImageFaces.empty(full_size, (width, height))
        faces.found = found
        return faces
    shapes = describer.landmarks(rgb, kept)
    descriptors = describer.describe(rgb, shapes, params.batch, started + params.time_budget_s)
    n = len(descriptors)
    flags = (CAPPED if found > len(kept) else 0) | (OUT_OF_TIME if n < len(kept) else 0)
    scale = np.float32(full_size[0] / width)
    return ImageFaces(
        boxes=np.asarray([d.box for d in kept[:n]], np.float32).reshape(-1, 4) * scale,
        landmarks=landmark_points(shapes)[:n] * scale,
        scores=np.asarray([d.score for d in kept[:n]], np.float32),
        found_by=np.asarray([d.found_by for d in kept[:n]], np.uint8),
        descriptors=descriptors,
        found=found,
        size=full_size,
        analysed_size=(width, height),
        flags=flags,
    )


def encode_record(faces: ImageFaces) -> bytes:
    n = len(faces)
    header = _HEADER.pack(RECORD_VERSION, faces.flags, n, faces.found, *faces.size, *faces.analysed_size)
    parts = [
        header,
        np.ascontiguousarray(faces.boxes, "<f4").tobytes(),
        np.ascontiguousarray(faces.landmarks, "<f4").tobytes(),
        np.ascontiguousarray(faces.scores, "<f4").tobytes(),
        np.ascontiguousarray(faces.found_by, np.uint8).tobytes(),
        np.ascontiguousarray(faces.descriptors, "<f4").tobytes(),
    ]
    return b"".join(parts)


def decode_record(record: bytes) -> ImageFaces:
    version, flags, n, found, width, height, analysed_w, analysed_h = _HEADER.unpack_from(record, 0)
    if version != RECORD_VERSION:
        raise ValueError(f"unknown faces record version {version}")
    offset = _HEADER.size

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal offset
        out = np.frombuffer(record, dtype, count=count, offset=offset)
        offset += out.nbytes
        return out.astype(np.float32 if dtype == "<f4" else np.uint8)

    return ImageFaces(
        boxes=take("<f4", 4 * n).reshape(n, 4),
        landmarks=take("<f4", 2 * LANDMARKS * n).reshape(n, LANDMARKS, 2),
        scores=take("<f4", n),
        found_by=take("u1", n),
        descriptors=take("<f4", DIM * n).reshape(n, DIM),
        found=found,
        size=(width, height),
        analysed_size=(analysed_w, analysed_h),
        flags=flags,
    )


def record_count(record: bytes) -> int:
    return int(_HEADER.unpack_from(record, 0)[2])


def record_descriptors(record: bytes) -> np.ndarray:
    """The (n, 128) descriptors of a record, without decoding the rest."""
    n = record_count(record)
    offset = _HEADER.size + n * (4 * 4 + 2 * LANDMARKS * 4 + 4 + 1)
    return np.frombuffer(record, "<f4", count=DIM * n, offset=offset).reshape(n, DIM)


def stacked_descriptors(records: list[bytes]) -> np.ndarray:
    """The descriptors of stored records, stacked in order (the index rows of the faces service)."""
    parts = [record_descriptors(record) for record in records]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, DIM), np.float32)
