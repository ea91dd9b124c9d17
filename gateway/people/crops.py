"""Small square pictures of faces for the page, cut from the picture the faces service analysed.

The boxes are pixels of the full photo as displayed (EXIF orientation applied); the picture is
decoded through the kit's safe path only as large as the smallest face needs (a 128-px crop of a
face 300 px wide in a 4000-px photo does not need the full 12 MP), then each face is cut with a
margin around its box, made square, scaled to ``side`` and kept as WebP (3-6 KB).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image

from services.common.images import DecodeLimits, decode_image

Box = Sequence[float]
#: The crop reaches this far around the face box, as a fraction of the box's side.
MARGIN = 0.3


def crop_box(box: Box, width: int, height: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """The square around ``box`` with ``margin`` on each side, kept inside the picture where it can be."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    side = min(side, width, height)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = min(max(0.0, cx - side / 2), width - side)
    y0 = min(max(0.0, cy - side / 2), height - side)
    return round(x0), round(y0), round(x0 + side), round(y0 + side)


def face_crops(
    picture: Image.Image, full_size: tuple[int, int], boxes: list[Box], side: int, quality: int = 80
) -> list[bytes]:
    """A WebP of each face of ``boxes`` (pixels of a ``full_size`` photo) cut from ``picture`` (that
    photo, possibly decoded smaller)."""
    scale_x, scale_y = picture.width / full_size[0], picture.height / full_size[1]
    out = []
    for box in boxes:
        scaled = (box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y)
        crop = picture.crop(crop_box(scaled, picture.width, picture.height))
        crop = crop.resize((side, side), Image.Resampling.LANCZOS) if crop.width > side else crop
        buffer = io.BytesIO()
        crop.save(buffer, "WEBP", quality=quality, method=4)
        out.append(buffer.getvalue())
    return out


def crops_from_upload(
    data: bytes, full_size: tuple[int, int], boxes: list[Box], side: int, limits: DecodeLimits
) -> list[bytes]:
    """The face crops of an upload: decoded at the smallest size where the smallest face's crop
    still has ``side`` pixels (raises ImageError when it cannot be decoded)."""
    if not boxes:
        return []
    smallest = min(max(b[2] - b[0], b[3] - b[1]) for b in boxes) * (1 + 2 * MARGIN)
    needed = min(1.0, side / max(smallest, 1.0))
    draft = max(side, math.ceil(min(full_size) * needed))
    decoded = decode_image(data, "RGB", limits=limits, draft_size=draft)
    return face_crops(decoded.image, full_size, boxes, side)
