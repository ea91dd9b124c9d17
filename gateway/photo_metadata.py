"""What the gateway remembers of an upload: kind (photo or video), format, size in pixels and bytes,
file name, capture time (and the exact exposure time, which tells two shots apart:
gateway/duplicates/exposure.py), GPS position and a video's duration. Read by the kit's one
metadata reader (services/common/media/metadata.py: JPEG, PNG, WebP, HEIC, AVIF, camera RAW and
video alike) without decoding pixels; a file it cannot read still gets its byte count and name (the
services decide whether it is an image)."""

from __future__ import annotations

from typing import Any

from services.common.media.metadata import read_media_metadata


def read_metadata(data: bytes, file_name: str | None) -> dict[str, Any]:
    """``bytes``, ``file_name``, ``kind`` (photo | video), ``format`` (JPEG, HEIC, DNG, MP4, ...),
    ``width``, ``height`` (as displayed: EXIF rotation or a video's display matrix applied),
    ``captured_at`` (EXIF, camera-local; a video's creation time), ``exposed_at`` and
    ``exposure_subsecond`` (DateTimeOriginal with SubSecTimeOriginal), ``gps_latitude``,
    ``gps_longitude``, ``duration_s`` (videos); None where unknown."""
    found = read_media_metadata(data)
    found.pop("orientation", None)
    return {"bytes": len(data), "file_name": (file_name or None) and file_name[:255], **found}
