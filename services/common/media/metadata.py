"""What a photo or video says about itself, read without decoding its pixels: kind, format, size as
displayed, capture time (and the exact exposure time), GPS position, orientation; duration for a
video. One reader for every format the kit decodes, so the gateway's catalog learns the same from a
HEIC, a RAW or an MP4 as from a JPEG.

- JPEG, PNG, WebP, TIFF, HEIC/HEIF, AVIF: Pillow's header (pillow-heif for HEIF) and EXIF.
- RAW: the EXIF of the file's own TIFF structure (DNG, CR2, NEF, ARW, PEF, SRW; ORF and RW2 under
  their own magic), Canon CR3's CMT boxes, else the embedded preview's EXIF; size and orientation
  from LibRaw's header.
- Video: the container's metadata (PyAV): duration, creation time (camera-local where the container
  has it with its offset, e.g. Apple's ``com.apple.quicktime.creationdate``; else the UTC
  ``creation_time``), ISO 6709 location, frame size turned by the display matrix.

EXIF times are the camera's local time (EXIF keeps no reliable time zone). Every reader is bounded
(the pixel limit and the video time limit apply); a file none can read gets None everywhere.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image

from services.common.media.formats import MediaFormat, sniff
from services.common.media.heif import register_heif

log = logging.getLogger("ambience.images")

_EXIF_TIMES = (ExifTags.Base.DateTimeOriginal, ExifTags.Base.DateTimeDigitized)
#: Seconds a video's metadata may take to read (the container is probed, nothing decoded).
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ExifBlocks:
    """The three EXIF directories that carry what we read: IFD0, the Exif IFD and the GPS IFD."""

    ifd0: Mapping[int, Any] = field(default_factory=dict)
    exif: Mapping[int, Any] = field(default_factory=dict)
    gps: Mapping[int, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exif: Image.Exif) -> ExifBlocks:
        return cls(dict(exif), _ifd(exif, ExifTags.IFD.Exif), _ifd(exif, ExifTags.IFD.GPSInfo))

    def __bool__(self) -> bool:
        return bool(self.ifd0 or self.exif or self.gps)

    def original(self, tag: int) -> Any:
        """A tag of the Exif IFD, else of IFD0 (DNG writers may keep EXIF tags there)."""
        value = self.exif.get(tag)
        return self.ifd0.get(tag) if value is None else value


def _ifd(exif: Image.Exif, which: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(which))
    except Exception:  # a broken pointer: the other directories still count
        return {}


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def capture_time(blocks: ExifBlocks) -> datetime | None:
    """The camera's local time of capture: DateTimeOriginal, DateTimeDigitized, else the file's
    DateTime."""
    for tag in _EXIF_TIMES:
        when = _when(blocks.original(tag))
        if when is not None:
            return when
    return _when(blocks.ifd0.get(ExifTags.Base.DateTime))


def exposure_time(blocks: ExifBlocks) -> tuple[datetime, bool] | None:
    """When the shutter opened, from the camera's own record only (DateTimeOriginal with
    SubSecTimeOriginal), and whether that record has sub-second precision. Never the file's
    DateTime, which an editor rewrites."""
    when = _when(blocks.original(ExifTags.Base.DateTimeOriginal))
    if when is None:
        return None
    fraction = str(blocks.original(ExifTags.Base.SubsecTimeOriginal) or "").strip("\x00 ")
    if not fraction.isdigit():
        return when, False
    return when.replace(microsecond=int(fraction[:6].ljust(6, "0"))), True


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    out = d + m / 60 + s / 3600
    return -out if str(ref).upper().startswith(negative) else out


def gps_position(blocks: ExifBlocks) -> tuple[float, float] | None:
    gps = blocks.gps
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef, "N"), "S")
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef, "E"), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def empty_metadata() -> dict[str, Any]:
    return {
        "kind": None,
        "format": None,
        "width": None,
        "height": None,
        "orientation": None,
        "captured_at": None,
        "exposed_at": None,
        "exposure_subsecond": None,
        "gps_latitude": None,
        "gps_longitude": None,
        "duration_s": None,
    }


def read_media_metadata(data: bytes) -> dict[str, Any]:
    """``kind`` (photo | video), ``format``, ``width`` and ``height`` as displayed, ``orientation``
    (EXIF 1-8), ``captured_at``, ``exposed_at`` and ``exposure_subsecond``, ``gps_latitude``,
    ``gps_longitude``, ``duration_s`` (videos); None where unknown or unreadable."""
    out = empty_metadata()
    fmt = sniff(data)
    try:
        if fmt is not None and fmt.decoder == "video":
            _video(data, fmt, out)
        elif fmt is not None and fmt.decoder == "raw":
            _raw(data, fmt, out)
        else:
            _still(data, fmt, out)
    except Exception as exc:  # any unreadable header: the decoders judge the file itself
        log.debug("no metadata: %s", exc)
    return out


def _exif_fields(blocks: ExifBlocks, out: dict[str, Any]) -> None:
    out["captured_at"] = capture_time(blocks)
    exposure = exposure_time(blocks)
    if exposure is not None:
        out.update(exposed_at=exposure[0], exposure_subsecond=exposure[1])
    position = gps_position(blocks)
    if position is not None:
        out.update(gps_latitude=position[0], gps_longitude=position[1])


def _still(data: bytes, fmt: MediaFormat | None, out: dict[str, Any]) -> None:
    if fmt is not None and fmt.name in ("HEIC", "HEIF"):
        register_heif()
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        blocks = ExifBlocks.of(img.getexif())
        orientation = blocks.ifd0.get(ExifTags.Base.Orientation)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        out.update(
            kind="photo",
            format=fmt.name if fmt is not None else img.format,
            width=width,
            height=height,
            orientation=orientation if isinstance(orientation, int) else 1,
        )
        _exif_fields(blocks, out)


#: TIFF magic of the RAW formats that change it, so Pillow's EXIF parser reads them as TIFF.
_TIFF_MAGIC = {b"IIRO": b"II*\x00", b"IIRS": b"II*\x00", b"MMOR": b"MM\x00*", b"IIU\x00": b"II*\x00"}
#: LibRaw's flip as an EXIF orientation.
_FLIP_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def raw_exif(data: bytes, fmt: MediaFormat) -> ExifBlocks:
    """The EXIF a RAW file carries in its own structure (empty when it has none we can read)."""
    if fmt.name == "CR3":
        return _cr3_exif(data)
    if fmt.name == "RAF":
        return ExifBlocks()
    head = _TIFF_MAGIC.get(data[:4], data[:4])
    if head not in (b"II*\x00", b"MM\x00*"):
        return ExifBlocks()
    exif = Image.Exif()
    exif.load(data if head == data[:4] else head + data[4:])
    return ExifBlocks.of(exif)


def _cr3_box(data: bytes, kind: bytes) -> bytes | None:
    """The payload of the first ``kind`` box (Canon keeps CMT1-4 in a uuid box of ``moov``)."""
    at = data.find(kind, 0, 1 << 20)
    if at < 4:
        return None
    size = int.from_bytes(data[at - 4 : at], "big")
    if size < 16 or at - 4 + size > len(data):
        return None
    return data[at + 4 : at - 4 + size]


def _tiff_directory(payload: bytes | None) -> dict[int, Any]:
    if not payload or payload[:4] not in (b"II*\x00", b"MM\x00*"):
        return {}
    exif = Image.Exif()
    exif.load(payload)
    return dict(exif)


def _cr3_exif(data: bytes) -> ExifBlocks:
    return ExifBlocks(
        _tiff_directory(_cr3_box(data, b"CMT1")),
        _tiff_directory(_cr3_box(data, b"CMT2")),
        _tiff_directory(_cr3_box(data, b"CMT4")),
    )


def _raw(data: bytes, fmt: MediaFormat, out: dict[str, Any]) -> None:
    from services.common.media.raw import raw_info

    info = raw_info(data, fmt.name)
    blocks = raw_exif(data, fmt)
    if not (blocks.exif or blocks.gps) and info.preview_jpeg is not None:
        with Image.open(io.BytesIO(info.preview_jpeg)) as preview:
            blocks = ExifBlocks.of(preview.getexif())
    width, height = info.size
    out.update(
        kind="photo",
        format=fmt.name,
        width=width,
        height=height,
        orientation=_FLIP_ORIENTATION.get(info.flip, 1),
    )
    _exif_fields(blocks, out)


def _video(data: bytes, fmt: MediaFormat, out: dict[str, Any]) -> None:
    from services.common.media.video import probe

    info = probe(data, fmt.name, timeout_s=PROBE_TIMEOUT_S)
    out.update(
        kind="video",
        format=fmt.name,
        width=info.width or None,
        height=info.height or None,
        orientation=1,
        captured_at=info.created_at,
        duration_s=info.duration_s,
    )
    if info.gps is not None:
        out.update(gps_latitude=info.gps[0], gps_longitude=info.gps[1])
