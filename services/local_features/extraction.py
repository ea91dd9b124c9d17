"""Keypoints and descriptors of one image, and their compact stored encoding.

Pipeline: grayscale, downscale so the long side is <= ``max_side``, OpenCV SIFT (DoG) keypoints
ranked by response, a sparse selection (quadrant quota and neighbour limit), then one 128-d
descriptor per keypoint: RootSIFT (no weights) or HardNet8 on 32x32 patches cut from local affine
frames built from the SIFT keypoint (centre, scale, orientation).

Stored record (one per image, little-endian):
    header  "<BBHHH": version, descriptor codec, n keypoints, width, height (of the analysed image)
    xy      n x 2 float16 keypoint positions in the analysed image
    codes   RootSIFT: n x 128 uint8 raw SIFT bins (lossless; RootSIFT is computed on decode)
            HardNet8: n x 128 uint8 per-row symmetric quantisation + n float16 row scales
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

DIM = 128
RECORD_VERSION = 1
CODEC_SIFT_U8 = 1
CODEC_ROW_INT8 = 2
_HEADER = struct.Struct("<BBHHH")
#: Ids are image_id << ID_SHIFT | keypoint index. One id short of 2^ID_SHIFT keypoints per image, so
#: that the largest image id's exclusive id range ends at 2^63 - 1 (FAISS ids are int64).
ID_SHIFT = 10
MAX_KEYPOINTS = (1 << ID_SHIFT) - 1


@dataclass(frozen=True)
class KeypointParams:
    max_side: int = 800
    max_keypoints: int = 200
    neighbour_radius: float = 50.0
    max_neighbours: int = 3
    contrast_threshold: float = 0.003
    candidates: int = 3000


@dataclass
class Features:
    """Keypoints and unit-length descriptors of one analysed image."""

    xy: np.ndarray  # (n, 2) float32, pixels of the analysed (downscaled) image
    descriptors: np.ndarray  # (n, 128) float32, L2-normalised
    size: tuple[int, int]  # (width, height) of the analysed image

    def __len__(self) -> int:
        return len(self.xy)

    @staticmethod
    def empty(size: tuple[int, int] = (0, 0)) -> Features:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, DIM), np.float32), size)


def prepare_gray(gray: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 grayscale downscaled (area interpolation) so that its long side is <= max_side."""
    h, w = gray.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray, dtype=np.uint8)


def select_keypoints(
    keypoints: list[cv2.KeyPoint], size: tuple[int, int], params: KeypointParams
) -> list[cv2.KeyPoint]:
    """Strongest first, at most max_keypoints/4 per image quadrant; a keypoint is skipped when a
    chosen keypoint within ``neighbour_radius`` already has ``max_neighbours`` chosen neighbours.
    Spreads keypoints over the picture so that any large crop keeps enough of them."""
    width, height = size
    quota = max(1, params.max_keypoints // 4)
    order = sorted(range(len(keypoints)), key=lambda i: -keypoints[i].response)
    chosen: list[cv2.KeyPoint] = []
    chosen_xy = np.empty((params.max_keypoints, 2), np.float32)
    neighbours = np.zeros(params.max_keypoints, np.int32)
    per_quadrant = [0, 0, 0, 0]
    radius2 = params.neighbour_radius**2
    for i in order:
        kp = keypoints[i]
        x, y = kp.pt
        quadrant = (x >= width / 2) + 2 * (y >= height / 2)
        if per_quadrant[quadrant] >= quota:
            continue
        n = len(chosen)
        if n:
            d2 = ((chosen_xy[:n] - (x, y)) ** 2).sum(axis=1)
            near = d2 <= radius2
            if (neighbours[:n][near] >= params.max_neighbours).any():
                continue
            neighbours[:n][near] += 1
            neighbours[n] = int(near.sum())
        chosen_xy[n] = (x, y)
        chosen.append(kp)
        per_quadrant[quadrant] += 1
        if len(chosen) >= params.max_keypoints:
            break
    return chosen


def detect(gray: np.ndarray, params: KeypointParams) -> tuple[np.ndarray, list[cv2.KeyPoint]]:
    """(analysed image, selected keypoints)."""
    image = prepare_gray(gray, params.max_side)
    sift = cv2.SIFT_create(nfeatures=params.candidates, contrastThreshold=params.contrast_threshold)
    keypoints = sift.detect(image, None)
    height, width = image.shape
    return image, select_keypoints(list(keypoints), (width, height), params)


def rootsift(sift_bins: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, square root -> unit L2 rows."""
    bins = sift_bins.astype(np.float32)
    bins /= np.maximum(bins.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(bins)


class DescriptorModel(Protocol):
    """Patch descriptor: analysed image + keypoints -> (n, 128) float32 unit rows."""

    kind: str
    codec: int

    def describe(self, image: np.ndarray, keypoints: list[cv2.KeyPoint]) -> np.ndarray: ...


class RootSiftDescriptor:
    kind = "rootsift"
    codec = CODEC_SIFT_U8

    def __init__(self) -> None:
        self._sift = cv2.SIFT_create()

    def raw(self, image: np.ndarray, keypoints: list[cv2.KeyPoint]) -> np.ndarray:
        """The uint8 SIFT bins (what the store keeps)."""
        _, bins = self._sift.compute(image, keypoints)
        return np.clip(np.rint(bins), 0, 255).astype(np.uint8)

    def describe(self, image: np.ndarray, keypoints: list[cv2.KeyPoint]) -> np.ndarray:
        return rootsift(self.raw(image, keypoints))


def extract(gray: np.ndarray, params: KeypointParams, model: DescriptorModel) -> tuple[Features, bytes]:
    """(features as searched, the record to store) for a uint8 grayscale image.

    The features are decoded from the record itself, so a query sees exactly the quantised
    values the store holds."""
    image, keypoints = detect(gray, params)
    height, width = image.shape
    if not keypoints:
        empty = np.zeros((0, DIM), np.uint8)
        scales = np.zeros(0, np.float32) if model.codec == CODEC_ROW_INT8 else None
        record = _pack(np.zeros((0, 2), np.float32), empty, scales, model.codec, (width, height))
        return decode_record(record), record
    xy = np.array([kp.pt for kp in keypoints], np.float32)
    if isinstance(model, RootSiftDescriptor):
        codes: np.ndarray = model.raw(image, keypoints)
        record = _pack(xy, codes, None, CODEC_SIFT_U8, (width, height))
    else:
        record = encode_record(Features(xy, model.describe(image, keypoints), (width, height)), model.codec)
    return decode_record(record), record


# -- record codec -----------------------------------------------------------------------------------


def _pack(
    xy: np.ndarray, codes: np.ndarray, scales: np.ndarray | None, codec: int, size: tuple[int, int]
) -> bytes:
    n = len(xy)
    if n > MAX_KEYPOINTS:
        raise ValueError(f"{n} keypoints; at most {MAX_KEYPOINTS} fit the id layout")
    width, height = (min(v, 65535) for v in size)
    parts = [_HEADER.pack(RECORD_VERSION, codec, n, width, height), xy.astype("<f2").tobytes()]
    parts.append(np.ascontiguousarray(codes, np.uint8).tobytes())
    if scales is not None:
        parts.append(scales.astype("<f2").tobytes())
    return b"".join(parts)


def encode_record(features: Features, codec: int) -> bytes:
    descriptors = features.descriptors.astype(np.float32)
    if codec == CODEC_SIFT_U8:
        raise ValueError("RootSIFT records are packed from raw SIFT bins (see extract)")
    if codec != CODEC_ROW_INT8:
        raise ValueError(f"unknown descriptor codec {codec}")
    # Symmetric per-row quantisation: code = round(x / scale) + 128, scale = max|x| / 127.
    scales = np.maximum(np.abs(descriptors).max(axis=1), 1e-8) / 127.0
    scales = scales.astype(np.float16).astype(np.float32)  # quantise with the scale we store
    codes = np.clip(np.rint(descriptors / scales[:, None]) + 128, 1, 255).astype(np.uint8)
    return _pack(features.xy, codes, scales, codec, features.size)


def decode_record(record: bytes) -> Features:
    version, codec, n, width, height = _HEADER.unpack_from(record, 0)
    if version != RECORD_VERSION:
        raise ValueError(f"unknown local-feature record version {version}")
    offset = _HEADER.size
    xy = np.frombuffer(record, "<f2", count=2 * n, offset=offset).astype(np.float32).reshape(n, 2)
    offset += 4 * n
    codes = np.frombuffer(record, np.uint8, count=DIM * n, offset=offset).reshape(n, DIM)
    offset += DIM * n
    if codec == CODEC_SIFT_U8:
        descriptors = rootsift(codes)
    elif codec == CODEC_ROW_INT8:
        scales = np.frombuffer(record, "<f2", count=n, offset=offset).astype(np.float32)
        descriptors = (codes.astype(np.float32) - 128) * scales[:, None]
        descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-8)
    else:
        raise ValueError(f"unknown descriptor codec {codec}")
    return Features(xy, np.ascontiguousarray(descriptors, np.float32), (width, height))


def record_count(record: bytes) -> int:
    return int(_HEADER.unpack_from(record, 0)[2])


def stacked_descriptors(records: list[bytes]) -> np.ndarray:
    """The descriptors of stored records, stacked in order (the index rows of local features)."""
    parts = [decode_record(record).descriptors for record in records]
    return np.concatenate(parts) if parts else np.zeros((0, DIM), np.float32)


def query_features(
    gray: np.ndarray, params: KeypointParams, model: DescriptorModel, octaves: int
) -> Features:
    """Query features from a small pyramid: the analysed image and ``octaves - 1`` halvings,
    keypoints mapped back to the analysed image's pixels. A crop is seen at a finer scale than
    its downscaled source, so its strongest keypoints are fine details the source never kept;
    the halved query recovers the source's scale (25%-area crops: 60% -> 86% verified)."""
    image = prepare_gray(gray, params.max_side)
    parts = []
    scale = 1
    while len(parts) < octaves and min(image.shape) >= 32:
        parts.append((scale, extract(image, params, model)[0]))
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        scale *= 2
    if not parts:
        height, width = image.shape
        return Features.empty((width, height))
    return Features(
        np.concatenate([f.xy * s for s, f in parts]),
        np.concatenate([f.descriptors for _, f in parts]),
        parts[0][1].size,
    )


def mirror_gray(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(gray[:, ::-1])
