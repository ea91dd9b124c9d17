"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, ORF, RAF, RW2, ...) through LibRaw (rawpy).

A RAW holds the sensor's mosaic and, nearly always, a JPEG preview the camera rendered (often at
full size; Sony and Nikon write 1616x1080 or so). A feature rarely needs more than 256-1024 pixels,
so the preview is used whenever its short side is at least what the feature asks for
(``draft_size``, or :data:`PREVIEW_MIN_SIDE` when it asks for the full picture) and it has the raw's
aspect ratio (a preview of another crop would describe another picture); otherwise the mosaic is
demosaiced at half size (each 2x2 block of the colour filter array becomes one pixel: no
interpolation, a quarter of the memory). Opening reads the header only, so the sensor size is
checked against the pixel limit before anything is unpacked, and the demosaic's memory is reserved
in the decode budget first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from types import TracebackType

import numpy as np
from PIL import Image

from services.common.media.errors import ImageError

#: Short side a preview needs when the feature asks for the full picture (no ``draft_size``).
PREVIEW_MIN_SIDE = 1024
#: Memory of a half-size demosaic per sensor pixel: the unpacked mosaic (2 B), LibRaw's half-size
#: four-channel 16-bit image (8 B per output pixel, a quarter of the sensor's), the 8-bit RGB array
#: (3 B per output pixel) and Pillow's copy of it (4 B per output pixel).
DEMOSAIC_BYTES_PER_PIXEL = 2 + (8 + 3 + 4) / 4
#: A preview within this ratio of the raw's aspect shows the same frame (sensor margins round).
_ASPECT_TOLERANCE = 0.03
#: LibRaw's flip (0 none, 3 180 degrees, 5 90 counter-clockwise, 6 90 clockwise) as a transpose.
_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def _rawpy():  # type: ignore[no-untyped-def]
    try:
        import rawpy
    except ImportError:  # pragma: no cover - a base dependency
        raise ImageError(415, "camera RAW decoding needs the rawpy package") from None
    return rawpy


class RawFile:
    """An opened RAW (header parsed, nothing unpacked). A context manager: closing frees LibRaw's
    buffers at once."""

    def __init__(self, data: bytes, fmt: str) -> None:
        rawpy = _rawpy()
        self.fmt = fmt
        self._raw = rawpy.RawPy()
        try:
            self._raw.open_buffer(io.BytesIO(data))
            sizes = self._raw.sizes
        except rawpy.LibRawFileUnsupportedError as exc:
            self.close()
            raise ImageError(415, f"unsupported {fmt} variant: {_reason(exc)}") from None
        except rawpy.LibRawTooBigError as exc:
            self.close()
            raise ImageError(413, f"{fmt} image too large for the decoder: {_reason(exc)}") from None
        except Exception as exc:
            self.close()
            raise ImageError(422, f"corrupt or truncated {fmt} image: {_reason(exc)}") from None
        self.flip = int(sizes.flip)
        #: The sensor's full size (what is unpacked), and the visible image as it is displayed.
        self.sensor_size = (int(sizes.raw_width), int(sizes.raw_height))
        width, height = int(sizes.width), int(sizes.height)
        self.size = (height, width) if self.flip in (5, 6) else (width, height)

    def __enter__(self) -> RawFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    @property
    def transpose(self) -> Image.Transpose | None:
        return _FLIP.get(self.flip)

    def demosaic_cost(self) -> int:
        width, height = self.sensor_size
        return int(width * height * DEMOSAIC_BYTES_PER_PIXEL)

    def preview(self, min_side: int) -> bytes | Image.Image | None:
        """The camera's preview (JPEG bytes, or a bitmap as an RGB image) when its short side is at
        least ``min_side`` and it shows the raw's frame; None otherwise (or when there is none)."""
        rawpy = _rawpy()
        try:
            thumb = self._raw.extract_thumb()
        except Exception:  # none, an unsupported kind, or a broken one: the mosaic decides
            return None
        if thumb.format == rawpy.ThumbFormat.JPEG:
            try:
                with Image.open(io.BytesIO(thumb.data)) as img:
                    size = img.size
            except Exception:
                return None
            preview: bytes | Image.Image = bytes(thumb.data)
        else:
            array = np.asarray(thumb.data)
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
                return None
            preview = Image.fromarray(array, "RGB")
            size = preview.size
        if min(size) < min_side or not self._same_frame(size):
            return None
        return preview

    def _same_frame(self, size: tuple[int, int]) -> bool:
        width, height = self.size
        mine = max(width, height) / max(1, min(width, height))
        theirs = max(size) / max(1, min(size))
        return abs(mine - theirs) <= _ASPECT_TOLERANCE * mine

    def demosaic(self) -> Image.Image:
        """The mosaic demosaiced at half size as 8-bit sRGB, with the camera's white balance and
        orientation applied."""
        rawpy = _rawpy()
        try:
            self._raw.unpack()
            rgb = self._raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        except (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, MemoryError) as exc:
            raise ImageError(413, f"{self.fmt} image too large to decode: {_reason(exc)}") from None
        except Exception as exc:
            raise ImageError(422, f"corrupt or truncated {self.fmt} image: {_reason(exc)}") from None
        return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def _reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text) or type(exc).__name__


@dataclass(frozen=True)
class RawInfo:
    """What the metadata reader needs of a RAW without decoding it."""

    size: tuple[int, int]
    flip: int
    preview_jpeg: bytes | None


def raw_info(data: bytes, fmt: str) -> RawInfo:
    """Displayed size, LibRaw's flip and the preview JPEG (for its EXIF) of a RAW."""
    with RawFile(data, fmt) as raw:
        preview = raw.preview(0)
        return RawInfo(raw.size, raw.flip, preview if isinstance(preview, bytes) else None)
