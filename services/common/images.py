"""The one safe image-decode path, shared by add and query alike.

Every failure raises :class:`ImageError` carrying an HTTP status and a message that names
the problem, so callers can turn it into a 4xx; nothing here should surface as a 500.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Our own pixel check runs before decoding; Pillow's global guard would only duplicate it
# with a less helpful message (and it warns below its error threshold).
Image.MAX_IMAGE_PIXELS = None

ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})

Mode = Literal["RGB", "L"]


class ImageError(Exception):
    """An upload that cannot be used as an image. ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    min_side: int = 8


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image plus what it looked like on disk (for diagnostics and /stats)."""

    image: Image.Image
    original_size: tuple[int, int]
    format: str


def decode_image(
    data: bytes,
    mode: Mode = "RGB",
    *,
    limits: DecodeLimits = DecodeLimits(),
    draft_size: int | None = None,
) -> DecodedImage:
    """Decode ``data`` into a PIL image of ``mode`` with EXIF orientation applied.

    ``draft_size``: when the feature only needs a small picture, JPEGs are decoded at the
    smallest DCT scale (1/2, 1/4, 1/8) whose short side is still >= ``draft_size``, which
    makes a 24 MP photo several times cheaper to decode.
    """
    if not data:
        raise ImageError(422, "empty upload: the image file has 0 bytes")
    if len(data) > limits.max_bytes:
        raise ImageError(413, f"upload is {len(data)} bytes, larger than the limit of {limits.max_bytes}")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(422, "not a recognised image (expected JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except Exception as exc:  # malformed headers raise many exception types
        raise ImageError(422, f"cannot read image header: {exc}") from None
    fmt = img.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(415, f"unsupported image format {fmt}; use JPEG, PNG, WebP, GIF, BMP or TIFF")
    width, height = img.size
    if width * height > limits.max_pixels:
        raise ImageError(
            413,
            f"image is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{limits.max_pixels}",
        )
    if min(width, height) < limits.min_side:
        raise ImageError(
            422, f"image is {width}x{height}; each side must be at least {limits.min_side} pixels"
        )
    try:
        if draft_size is not None and fmt in ("JPEG", "MPO"):
            # draft() keeps the result >= the requested box, so aspect ratio is preserved and
            # the short side stays >= draft_size.
            scale = min(width, height) / draft_size
            if scale >= 2:
                box = (math.ceil(width / scale), math.ceil(height / scale))
                img.draft(mode if img.mode in ("L", "RGB") else None, box)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()  # GIF/APNG/TIFF: the first frame, which is what open() positions on
        img = ImageOps.exif_transpose(img) or img
        img = _to_mode(img, mode)
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(422, f"corrupt or truncated {fmt} image: {exc}") from None
    except Exception as exc:
        raise ImageError(422, f"cannot decode {fmt} image: {exc}") from None
    return DecodedImage(image=img, original_size=(width, height), format=fmt)


def _to_mode(img: Image.Image, mode: Mode) -> Image.Image:
    """Convert any Pillow mode to ``mode``: scale high bit depths, flatten alpha onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit data: Pillow's own convert() clips to 255 instead of scaling.
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != mode:
        img = img.convert(mode)
    return img


def mirrored(img: Image.Image) -> Image.Image:
    return ImageOps.mirror(img)
