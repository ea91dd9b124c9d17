"""What the gateway remembers of an upload: size in pixels and bytes, file name, EXIF capture time
(and the exact exposure time, which tells two shots apart: gateway/duplicates/exposure.py) and GPS
position. Only the header is
read (PIL opens lazily, no pixels are decoded); a file PIL cannot read still gets its byte count
and name (the services decide whether it is an image)."""

from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image

log = logging.getLogger("ambience.gateway")

_EXIF_TIMES = (ExifTags.Base.DateTimeOriginal, ExifTags.Base.DateTimeDigitized)


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    out = d + m / 60 + s / 3600
    return -out if str(ref).upper().startswith(negative) else out


def capture_time(exif: Image.Exif) -> datetime | None:
    """The camera's local time of capture (EXIF keeps no time zone reliably)."""
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    for tag in _EXIF_TIMES:
        text = sub.get(tag)
        if isinstance(text, str):
            try:
                return datetime.strptime(text.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
            except ValueError:
                continue
    text = exif.get(ExifTags.Base.DateTime)
    if isinstance(text, str):
        try:
            return datetime.strptime(text.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            return None
    return None


def exposure_time(exif: Image.Exif) -> tuple[datetime, bool] | None:
    """When the shutter opened, from the camera's own record only (DateTimeOriginal with
    SubSecTimeOriginal), and whether that record has sub-second precision. Unlike
    :func:`capture_time` never the file's DateTime, which an editor rewrites: two different
    exposure times mean two different shots, so a re-encode or crop keeps its original's."""
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    text = sub.get(ExifTags.Base.DateTimeOriginal)
    if not isinstance(text, str):
        return None
    try:
        when = datetime.strptime(text.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    fraction = str(sub.get(ExifTags.Base.SubsecTimeOriginal) or "").strip("\x00 ")
    if not fraction.isdigit():
        return when, False
    return when.replace(microsecond=int(fraction[:6].ljust(6, "0"))), True


def gps_position(exif: Image.Exif) -> tuple[float, float] | None:
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef, "N"), "S")
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef, "E"), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def read_metadata(data: bytes, file_name: str | None) -> dict[str, Any]:
    """``width``, ``height`` (as displayed: EXIF rotation applied), ``bytes``, ``file_name``,
    ``captured_at``, ``exposed_at`` and ``exposure_subsecond`` (:func:`exposure_time`),
    ``gps_latitude``, ``gps_longitude``; None where unknown."""
    out: dict[str, Any] = {
        "bytes": len(data),
        "file_name": (file_name or None) and file_name[:255],
        "width": None,
        "height": None,
        "captured_at": None,
        "exposed_at": None,
        "exposure_subsecond": None,
        "gps_latitude": None,
        "gps_longitude": None,
    }
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            exif = img.getexif()
            if exif.get(ExifTags.Base.Orientation) in (5, 6, 7, 8):
                width, height = height, width
            out.update(width=width, height=height, captured_at=capture_time(exif))
            exposure = exposure_time(exif)
            if exposure is not None:
                out.update(exposed_at=exposure[0], exposure_subsecond=exposure[1])
            position = gps_position(exif)
            if position is not None:
                out.update(gps_latitude=position[0], gps_longitude=position[1])
    except Exception as exc:  # any unreadable header: the services judge the image itself
        log.debug("no metadata from %s: %s", file_name, exc)
    return out
