"""The one safe image-decode path, shared by add and query alike.

Every failure raises :class:`ImageError` carrying an HTTP status and a message that names
the problem, so callers can turn it into a 4xx; nothing here should surface as a 500.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.limits import BudgetFull, MemoryBudget

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
    #: Memory of decodes in flight (shared by every decode of one service).
    budget: MemoryBudget | None = None

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> DecodeLimits:
        """The limits of a service, with its own decode budget."""
        return cls(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            min_side=settings.min_side,
            budget=MemoryBudget(settings.decode_budget_mb << 20, "decode"),
        )


class LimitSettings(Protocol):
    max_upload_bytes: int
    max_pixels: int
    min_side: int
    decode_budget_mb: int


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image plus what it looked like on disk (for diagnostics and /stats)."""

    image: Image.Image
    original_size: tuple[int, int]
    format: str
    #: The size the full image has once EXIF orientation is applied (``image`` may be reduced).
    full_size: tuple[int, int] = (0, 0)


def open_image(data: bytes) -> Image.Image:
    """``data`` opened lazily (header read, no pixels decoded); ImageError 422/415 when it is empty,
    not an image or a format we do not take. Cheap enough to refuse a non-image before any work."""
    if not data:
        raise ImageError(422, "empty upload: the image file has 0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(422, "not a recognised image (expected JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except Exception as exc:  # malformed headers raise many exception types
        raise ImageError(422, f"cannot read image header: {exc}") from None
    if (img.format or "unknown") not in ALLOWED_FORMATS:
        raise ImageError(415, f"unsupported image format {img.format}; use JPEG, PNG, WebP, GIF, BMP or TIFF")
    return img


def decode_image(
    data: bytes,
    mode: Mode = "RGB",
    *,
    limits: DecodeLimits = DecodeLimits(),
    draft_size: int | None = None,
    draft_long_side: int | None = None,
) -> DecodedImage:
    """Decode ``data`` into a PIL image of ``mode`` with EXIF orientation applied.

    ``draft_size``: when the feature only needs a small picture, the image is decoded into the
    size it needs before any conversion: JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) whose short
    side is still >= ``draft_size``, then any format box-reduced by the integer factor that keeps
    the short side >= ``draft_size``. A 100 MP PNG thus never exists in more than its native mode.
    ``draft_long_side``: the same for a feature that scales the *long* side down to this (the short
    side it needs follows from the aspect ratio).
    """
    if len(data) > limits.max_bytes:
        raise ImageError(413, f"upload is {len(data)} bytes, larger than the limit of {limits.max_bytes}")
    img = open_image(data)
    fmt = img.format or "unknown"
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
    if draft_long_side is not None:
        draft_size = max(1, math.ceil(draft_long_side * min(width, height) / max(width, height)))
    try:
        if draft_size is not None and fmt in ("JPEG", "MPO"):
            # draft() keeps the result >= the requested box, so aspect ratio is preserved and
            # the short side stays >= draft_size.
            scale = min(width, height) / draft_size
            if scale >= 2:
                box = (math.ceil(width / scale), math.ceil(height / scale))
                img.draft(mode if img.mode in ("L", "RGB") else None, box)
        orientation = _orientation(img)
        factor = max(1, min(img.size) // draft_size) if draft_size else 1
        budget = limits.budget or _UNBOUNDED
        with budget.reserve(decode_cost(img, mode, factor)):
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()  # GIF/APNG/TIFF: the first frame, which is what open() positions on
            img = convert_reduced(img, mode, factor)
        if orientation is not None:
            img = img.transpose(orientation)
    except (ImageError, BudgetFull):
        raise
    except OSError as exc:
        raise ImageError(422, f"corrupt or truncated {fmt} image: {exc}") from None
    except Exception as exc:
        raise ImageError(422, f"cannot decode {fmt} image: {exc}") from None
    turned = orientation in _QUARTER_TURNS
    full_size = (height, width) if turned else (width, height)
    return DecodedImage(image=img, original_size=(width, height), format=fmt, full_size=full_size)


_UNBOUNDED = MemoryBudget(1 << 62, "decode")
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_QUARTER_TURNS = frozenset(
    {
        Image.Transpose.TRANSPOSE,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
    }
)


def _orientation(img: Image.Image) -> Image.Transpose | None:
    """The transpose that EXIF orientation asks for (what ImageOps.exif_transpose applies), read
    before conversion because the converted image no longer carries the EXIF block."""
    try:
        return _TRANSPOSE_FOR_ORIENTATION.get(img.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block is no reason to refuse the picture
        return None


#: Bytes per pixel of Pillow's in-memory modes (every other mode takes 4).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
#: Pixels converted at a time: bounds the temporary copies of a conversion to a few MB.
_STRIP_PIXELS = 1 << 22


def decode_cost(img: Image.Image, mode: Mode, factor: int = 1) -> int:
    """Bytes a decode of ``img`` (after draft) into ``mode`` reduced by ``factor`` allocates at its
    peak: the native pixels, one converted strip and the (reduced) result."""
    width, height = img.size
    native = width * height * _PIXEL_BYTES.get(img.mode, 4)
    strip = 3 * _STRIP_PIXELS * 4
    result = math.ceil(width / factor) * math.ceil(height / factor) * _PIXEL_BYTES.get(mode, 4)
    return native + strip + result


def convert_reduced(img: Image.Image, mode: Mode, factor: int = 1) -> Image.Image:
    """``img`` in ``mode``, box-reduced by ``factor``, converting a strip of rows at a time so no
    full-size copy in another mode (or in float64) ever exists.

    Strips are a multiple of ``factor`` rows high, so the result equals reducing the whole image.
    """
    if factor == 1 and img.mode == mode:
        return img
    width, height = img.size
    top = _grey_scale_top(img)
    rows = max(1, _STRIP_PIXELS // max(1, width) // factor) * factor
    out = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for y in range(0, height, rows):
        strip = img.crop((0, y, width, min(y + rows, height)))
        if factor > 1:
            strip = _reducible(strip).reduce(factor)
        out.paste(_to_mode(strip, mode, top), (0, y // factor))
    return out


def _reducible(img: Image.Image) -> Image.Image:
    """``img`` in a mode Pillow's reduce() handles, without losing depth (reducing first keeps the
    per-pixel scaling and compositing work to the reduced picture)."""
    if img.mode.startswith("I;16"):
        return img.convert("I")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "PA":
        return img.convert("RGBA")
    if img.mode == "1":
        return img.convert("L")
    return img


def _grey_scale_top(img: Image.Image) -> float:
    """The value that maps to white for high-bit-depth modes (Pillow's convert() would clip)."""
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode in ("I", "F"):
        return 65535.0 if img.getextrema()[1] > 255 else 255.0  # type: ignore[index, operator]
    return 255.0


def _to_mode(img: Image.Image, mode: Mode, top: float = 255.0) -> Image.Image:
    """Convert any Pillow mode to ``mode``: scale high bit depths, flatten alpha onto white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.clip(np.asarray(img).astype(np.int64), 0, int(top))
        img = Image.fromarray((arr * 255 // int(top)).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(np.clip(arr * np.float32(255.0 / top), 0, 255).astype(np.uint8), "L")
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
