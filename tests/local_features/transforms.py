"""The copy transforms the local-features service must see through (shared by test and bench)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps


def crop(img: Image.Image, area: float, rng: np.random.Generator) -> Image.Image:
    """A random crop keeping ``area`` of the picture (same aspect ratio)."""
    w, h = img.size
    side = math.sqrt(area)
    cw, ch = round(w * side), round(h * side)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def half(img: Image.Image) -> Image.Image:
    return img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS)


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)


#: name -> (transform(img, rng), search with mirrored=1)
TRANSFORMS: dict[str, tuple[Callable[[Image.Image, np.random.Generator], Image.Image], bool]] = {
    "crop50": (lambda img, rng: crop(img, 0.5, rng), False),
    "crop25": (lambda img, rng: crop(img, 0.25, rng), False),
    "crop50_jpeg40": (lambda img, rng: jpeg(crop(img, 0.5, rng), 40), False),
    "crop50_half": (lambda img, rng: half(crop(img, 0.5, rng)), False),
    "rotate10": (lambda img, rng: rotate(img, 10), False),
    "mirrored_crop50": (lambda img, rng: ImageOps.mirror(crop(img, 0.5, rng)), True),
}


def edge_signature(img: Image.Image) -> np.ndarray:
    """Unit vector of the 128x80 grayscale gradient magnitude: same geometry, any colours."""
    import cv2

    gray = np.asarray(img.convert("L").resize((128, 80)), np.float32)
    magnitude = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)).ravel()
    magnitude -= magnitude.mean()
    return magnitude / max(float(np.linalg.norm(magnitude)), 1e-8)


def same_picture_groups(images: list[Image.Image], threshold: float = 0.9) -> list[set[int]]:
    """For each image, the indices of images with the same geometry (edge-map correlation >=
    threshold). The photo folder holds one building shot recoloured five times (Forgacs): a
    grayscale geometric matcher cannot, and should not, tell those apart. Unrelated photos
    correlate below 0.65."""
    signatures = np.stack([edge_signature(img) for img in images])
    similar = signatures @ signatures.T >= threshold
    return [set(np.nonzero(row)[0].tolist()) for row in similar]
