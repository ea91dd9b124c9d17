"""The one safe image-decode path, shared by add and query alike, for every file a phone or camera
writes: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF, camera RAW and video.

What a file is comes from its magic bytes (:mod:`services.common.media.formats`); stills go through
Pillow (pillow-heif for HEIF), RAW through LibRaw (:mod:`~services.common.media.raw`: the camera's
preview when large enough, else a half-size demosaic), video through PyAV
(:mod:`~services.common.media.video`: one representative frame). Whatever the source, the limits are
checked before any pixel is decoded, the decode's memory is reserved in the budget, the picture is
reduced to the size the feature needs, turned as displayed and converted to sRGB in the asked mode.

Every failure raises :class:`ImageError` carrying an HTTP status and a message that names the
problem and the format, so callers can turn it into a 4xx; nothing here should surface as a 500.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from services.common.limits import BudgetFull, MemoryBudget
from services.common.media import color, heif
from services.common.media.errors import ImageError
from services.common.media.formats import ACCEPTED, Decoder, Kind, MediaFormat, sniff

__all__ = [
    "ALLOWED_FORMATS",
    "DecodeLimits",
    "DecodedImage",
    "Identified",
    "ImageError",
    "Mode",
    "decode_image",
    "identify",
    "open_image",
]

# Our own pixel check runs before decoding; Pillow's global guard would only duplicate it
# with a less helpful message (and it warns below its error threshold).
Image.MAX_IMAGE_PIXELS = None

#: Formats Pillow opens for us (HEIF through pillow-heif); RAW and video are recognised by sniffing.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"})

Mode = Literal["RGB", "L"]


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    min_side: int = 8
    #: Memory of decodes in flight (shared by every decode of one service).
    budget: MemoryBudget | None = None
    #: Time one video may take to be opened, probed, seeked and decoded.
    video_timeout_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> DecodeLimits:
        """The limits of a service, with its own decode budget."""
        return cls(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            min_side=settings.min_side,
            budget=MemoryBudget(settings.decode_budget_mb << 20, "decode"),
            video_timeout_s=settings.video_timeout_s,
        )


class LimitSettings(Protocol):
    max_upload_bytes: int
    max_pixels: int
    min_side: int
    decode_budget_mb: int
    video_timeout_s: float


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image plus what it looked like on disk (for diagnostics and /stats)."""

    image: Image.Image
    original_size: tuple[int, int]
    format: str
    #: The size the full image has once EXIF orientation is applied (``image`` may be reduced).
    full_size: tuple[int, int] = (0, 0)
    #: photo | video (a video is decoded into its representative frame).
    kind: Kind = "photo"


@dataclass(frozen=True)
class Identified:
    """What an upload is, known from its header: the format's name, photo or video, the decoder
    that takes it and, for what Pillow decodes, the image opened lazily (None for RAW and video)."""

    format: str
    kind: Kind
    decoder: Decoder
    image: Image.Image | None = None


def identify(data: bytes) -> Identified:
    """What ``data`` is, from its header alone (nothing decoded); ImageError 422/415 when it is
    empty, not an image or video we recognise, or a format this install cannot read. Cheap enough
    to refuse a non-image before any work."""
    if not data:
        raise ImageError(422, "empty upload: the image file has 0 bytes")
    fmt = sniff(data)
    if fmt is not None and fmt.decoder != "pillow":
        return Identified(fmt.name, fmt.kind, fmt.decoder)
    img = _open_still(data, fmt)
    name = fmt.name if fmt is not None else (img.format or "unknown")
    return Identified(name, "photo", "pillow", img)


def _open_still(data: bytes, fmt: MediaFormat | None) -> Image.Image:
    if fmt is not None and fmt.name == "AVIF":
        if not heif.avif_supported():
            raise ImageError(415, "unsupported image format AVIF: this Pillow is built without libavif")
        return _open_plugin(data, fmt.name, _avif_plugin())
    if fmt is not None:  # HEIC / HEIF
        if not heif.register_heif():
            raise ImageError(415, f"unsupported image format {fmt.name}: the pillow-heif package is missing")
        from pillow_heif.as_plugin import HeifImageFile

        return _open_plugin(data, fmt.name, HeifImageFile)
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(422, f"not a recognised image or video (expected {ACCEPTED})") from None
    except Exception as exc:  # malformed headers raise many exception types
        raise ImageError(422, f"cannot read image header: {exc}") from None
    if (img.format or "unknown") not in ALLOWED_FORMATS:
        raise ImageError(415, f"unsupported image format {img.format}; use {ACCEPTED}")
    return img


def _avif_plugin() -> type[ImageFile.ImageFile]:
    from PIL.AvifImagePlugin import AvifImageFile

    return AvifImageFile


def _open_plugin(data: bytes, name: str, plugin: type[ImageFile.ImageFile]) -> Image.Image:
    """Open with the one plugin the magic bytes name, so its own reason reaches the message (Pillow's
    open() would only say it found no plugin)."""
    try:
        return plugin(io.BytesIO(data))
    except Exception as exc:
        raise ImageError(422, f"corrupt or truncated {name} image: {exc or type(exc).__name__}") from None


def open_image(data: bytes) -> Image.Image:
    """``data`` opened lazily (header read, no pixels decoded) when it is a still Pillow decodes;
    ImageError 422/415 when it is empty, not an image or a format we do not take, and 415 for RAW and
    video, which only :func:`decode_image` reads (use :func:`identify` to accept every format)."""
    found = identify(data)
    if found.image is None:
        raise ImageError(415, f"{found.format} is a {found.kind} that only decode_image reads")
    return found.image


def decode_image(
    data: bytes,
    mode: Mode = "RGB",
    *,
    limits: DecodeLimits = DecodeLimits(),
    draft_size: int | None = None,
    draft_long_side: int | None = None,
) -> DecodedImage:
    """Decode ``data`` into a PIL image of ``mode``, turned as displayed and in sRGB; a video into its
    representative frame.

    ``draft_size``: when the feature only needs a small picture, the image is decoded into the
    size it needs before any conversion: JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) whose short
    side is still >= ``draft_size``, HEIFs from an embedded thumbnail that large, RAWs from the
    camera's preview, then any format box-reduced by the integer factor that keeps the short side
    >= ``draft_size``. A 100 MP PNG thus never exists in more than its native mode.
    ``draft_long_side``: the same for a feature that scales the *long* side down to this (the short
    side it needs follows from the aspect ratio; RAW and video frames keep their short side >= it).
    """
    if len(data) > limits.max_bytes:
        raise ImageError(413, f"upload is {len(data)} bytes, larger than the limit of {limits.max_bytes}")
    found = identify(data)
    if draft_long_side is not None:
        if found.image is not None and min(found.image.size) > 0:
            width, height = found.image.size
            draft_size = max(1, math.ceil(draft_long_side * min(width, height) / max(width, height)))
        else:
            draft_size = draft_long_side
    if found.decoder == "raw":
        return _decode_raw(data, found.format, mode, limits, draft_size)
    if found.decoder == "video":
        return _decode_video(data, found.format, mode, limits, draft_size)
    assert found.image is not None
    return _decode_still(found.image, found.format, mode, limits, draft_size)


def _check_size(what: str, width: int, height: int, limits: DecodeLimits) -> None:
    if width * height > limits.max_pixels:
        pixels = width * height
        raise ImageError(
            413, f"{what} is {width}x{height} = {pixels} pixels, more than the limit of {limits.max_pixels}"
        )
    if min(width, height) < limits.min_side:
        side = limits.min_side
        raise ImageError(422, f"{what} is {width}x{height}; each side must be at least {side} pixels")


#: Memory a format's decoder holds per pixel besides Pillow's image: libheif's and libavif's YUV
#: planes and the RGB buffer they hand over.
_DECODER_BYTES_PER_PIXEL = {"HEIC": 5, "HEIF": 5, "AVIF": 7}


def _decode_still(
    img: Image.Image,
    fmt: str,
    mode: Mode,
    limits: DecodeLimits,
    draft_size: int | None,
    fallback: Image.Transpose | None = None,
) -> DecodedImage:
    """A still Pillow opened. ``fallback``: the turn to apply when the file's EXIF names none (a RAW
    preview, whose orientation is the RAW's)."""
    width, height = img.size
    _check_size(f"{fmt} image", width, height, limits)
    try:
        if draft_size is not None and fmt in ("JPEG", "MPO", "HEIC", "HEIF"):
            # draft() keeps the result >= the requested box, so aspect ratio is preserved and
            # the short side stays >= draft_size (HEIF: an embedded thumbnail at least that large).
            scale = min(width, height) / draft_size
            if scale >= 2:
                box = (math.ceil(width / scale), math.ceil(height / scale))
                img.draft(mode if img.mode in ("L", "RGB") else None, box)
        orientation = _orientation(img)
        if orientation is None:
            orientation = fallback
        factor = max(1, min(img.size) // draft_size) if draft_size else 1
        budget = limits.budget or _UNBOUNDED
        extra = img.size[0] * img.size[1] * _DECODER_BYTES_PER_PIXEL.get(fmt, 0)
        with budget.reserve(decode_cost(img, mode, factor) + extra):
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()  # GIF/APNG/TIFF: the first frame, which is what open() positions on
            img = convert_reduced(img, mode, factor, color.srgb_transform(img))
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


def _decode_raw(
    data: bytes, fmt: str, mode: Mode, limits: DecodeLimits, draft_size: int | None
) -> DecodedImage:
    from services.common.media.raw import PREVIEW_MIN_SIDE, RawFile

    budget = limits.budget or _UNBOUNDED
    with RawFile(data, fmt) as raw:
        _check_size(f"{fmt} sensor", *raw.sensor_size, limits)
        _check_size(f"{fmt} image", *raw.size, limits)
        preview = raw.preview(draft_size or PREVIEW_MIN_SIDE)
        if preview is not None:
            try:
                still = preview if isinstance(preview, Image.Image) else _open_plugin_jpeg(preview)
                decoded = _decode_still(still, "JPEG", mode, limits, draft_size, raw.transpose)
                return DecodedImage(decoded.image, raw.sensor_size, fmt, raw.size)
            except ImageError:
                pass  # a broken preview: the mosaic still is the picture
        # half size: a quarter of the visible pixels, reduced further to the feature's size
        out_width, out_height = math.ceil(raw.size[0] / 2), math.ceil(raw.size[1] / 2)
        factor = max(1, min(out_width, out_height) // draft_size) if draft_size else 1
        result = math.ceil(out_width / factor) * math.ceil(out_height / factor) * _PIXEL_BYTES.get(mode, 4)
        with budget.reserve(raw.demosaic_cost() + 3 * _STRIP_PIXELS * 4 + result):
            img = raw.demosaic()
            try:
                img = convert_reduced(img, mode, factor)
            except Exception as exc:
                raise ImageError(422, f"cannot decode {fmt} image: {exc}") from None
    return DecodedImage(img, raw.sensor_size, fmt, raw.size)


def _open_plugin_jpeg(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=["JPEG"])
    except Exception as exc:
        raise ImageError(422, f"corrupt RAW preview: {exc}") from None


def _decode_video(
    data: bytes, fmt: str, mode: Mode, limits: DecodeLimits, draft_size: int | None
) -> DecodedImage:
    from services.common.media.video import VideoFile

    budget = limits.budget or _UNBOUNDED
    with VideoFile(
        data, fmt, max_pixels=limits.max_pixels, min_side=limits.min_side, timeout_s=limits.video_timeout_s
    ) as video:
        with budget.reserve(video.decode_cost()):
            frame = video.representative_frame()
            _check_size(f"{fmt} video frame", *frame.size, limits)
            try:
                img = convert_reduced(frame, mode, max(1, min(frame.size) // draft_size) if draft_size else 1)
            except Exception as exc:
                raise ImageError(422, f"cannot decode {fmt} video frame: {exc}") from None
        coded = video.coded_size
    return DecodedImage(img, coded, fmt, frame.size, kind="video")


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


def convert_reduced(
    img: Image.Image,
    mode: Mode,
    factor: int = 1,
    transform: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """``img`` in ``mode``, box-reduced by ``factor``, converting a strip of rows at a time so no
    full-size copy in another mode (or in float64) ever exists. ``transform``: applied to each
    (reduced) strip first (an embedded colour profile into sRGB).

    Strips are a multiple of ``factor`` rows high, so the result equals reducing the whole image.
    """
    if factor == 1 and img.mode == mode and transform is None:
        return img
    width, height = img.size
    top = _grey_scale_top(img)
    rows = max(1, _STRIP_PIXELS // max(1, width) // factor) * factor
    out = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for y in range(0, height, rows):
        strip = img.crop((0, y, width, min(y + rows, height)))
        if factor > 1:
            strip = _reducible(strip).reduce(factor)
        if transform is not None:
            strip = transform(strip)
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
