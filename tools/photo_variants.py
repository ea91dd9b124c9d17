"""Edited copies of a photo used to check that retrieval finds the source (tests and bench)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageOps

VARIANTS = ("jpeg30", "half_size", "crop80", "mirrored")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def variants(img: Image.Image, seed: int) -> dict[str, bytes]:
    """JPEG quality 30, half size, a crop keeping 80% of the area at a random place, mirrored."""
    w, h = img.size
    rng = np.random.default_rng(seed)
    side = math.sqrt(0.8)
    cw, ch = round(w * side), round(h * side)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return {
        "jpeg30": _jpeg(img, 30),
        "half_size": _jpeg(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 90),
        "crop80": _jpeg(img.crop((x0, y0, x0 + cw, y0 + ch)), 90),
        "mirrored": _jpeg(ImageOps.mirror(img), 90),
    }


def source_bytes(img: Image.Image) -> bytes:
    return _jpeg(img, 92)
