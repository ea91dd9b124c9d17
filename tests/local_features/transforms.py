"""The copy transforms the local-features service must see through (shared by test and bench)."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from pathlib import Path

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


def same_source_groups(paths: list[Path]) -> list[set[int]]:
    """For each photo, the indices of the photos whose files are byte-identical to it (itself
    included). The one rule by which the recall test and bench count a rank-1 hit: the photo folder
    holds copies under two names (Victor_Forgacs.jpg == Viktor_Forgacs.jpg), and returning either
    is finding the source. Recoloured or re-encoded versions of a shot are *different* photos."""
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    return [{j for j, other in enumerate(digests) if other == digest} for digest in digests]
