"""What the gateway remembers of an upload: size in pixels and bytes, file name, EXIF capture time
(and the exact exposure time, which tells two shots apart) and GPS position. Only the header is
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


def different_exposures(a: tuple[datetime, bool] | None, b: tuple[datetime, bool] | None) -> bool:
    """True when both exposure times are known and differ: at sub-second precision when both have
    it, else to the second (a copy may keep the second and drop the fraction)."""
    if a is None or b is None:
        return False
    if a[1] and b[1]:
        return a[0] != b[0]
    return a[0].replace(microsecond=0) != b[0].replace(microsecond=0)


Link = tuple[int, int, float]


def exposure_consistent(
    links: list[Link], exposure: dict[int, tuple[datetime, bool] | None], pinned: list[Link] | None = None
) -> list[Link]:
    """Those of ``links`` that keep every group they make to one exposure time: the ``pinned``
    links (already recorded) join their images first, then ``links`` nearest first, each left out
    when the two groups it would join hold different exposure times. So two frames of a burst are
    never grouped, neither directly nor through a copy that lost its EXIF (which joins the frame it
    is nearest to). ``exposure``: per image id, None where unknown."""
    parent: dict[int, int] = {}
    known: dict[int, tuple[datetime, bool] | None] = {}

    def find(image_id: int) -> int:
        if image_id not in parent:
            parent[image_id], known[image_id] = image_id, exposure.get(image_id)
        root = image_id
        while parent[root] != root:
            root = parent[root]
        while parent[image_id] != root:
            parent[image_id], image_id = root, parent[image_id]
        return root

    def join(a: int, b: int) -> bool:
        ra, rb = find(a), find(b)
        if ra == rb:
            return True
        if different_exposures(known[ra], known[rb]):
            return False
        parent[rb] = ra
        # keep the more precise of two agreeing times
        times = [t for t in (known[ra], known[rb]) if t is not None]
        known[ra] = max(times, key=lambda t: t[1]) if times else None
        return True

    for a, b, _ in pinned or []:
        join(a, b)
    kept = {(a, b) for a, b, _ in sorted(links, key=lambda link: link[2]) if join(a, b)}
    return [link for link in links if (link[0], link[1]) in kept]


def recorded_exposure(info: dict[str, Any]) -> tuple[datetime, bool] | None:
    """The exposure time as :func:`exposure_time` gives it, from what :func:`read_metadata`
    returned or the catalog recorded (``exposed_at``, ``exposure_subsecond``)."""
    when = info.get("exposed_at")
    return None if when is None else (when, bool(info.get("exposure_subsecond")))


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
