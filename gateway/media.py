"""Uploads that are expensive to decode (videos, HEIC/HEIF, AVIF) are decoded once, here, and every
service gets a JPEG still of the picture (the spool keeps that still for retries) instead of the file.

Why (measured by bench/decode_bench.py, docs/benchmarks.md "Decode cost per format" on 2 cores): a
12 MP HEIC takes about 0.9 s to decode (20 times a JPEG), an AVIF 0.1-0.25 s, and a video an open, a
seek and a frame decode plus its whole file on the wire. With the still the gateway pays that decode
once, and each service decodes a JPEG at the size it needs (10-30 ms at 256 px): a HEIC's fan-out to
8 services drops from 5.8 s of CPU to 1.1 s, a 10 s 1080p clip's from 272 ms and 56 MB on the wire to
114 ms and 4 MB. The services' upload limits then never have to fit a video either. Camera RAW is
left as it is: its preview decodes in about twice a JPEG's time. The upload itself is still read
here for what only it has (EXIF, a video's duration, creation time and location: the catalog's
metadata), and a file sent straight to one service is decoded there by the same kit path, into the
same picture.

The still is a JPEG at quality 95 with full-resolution chroma, already turned as displayed and in
sRGB, carrying the upload's capture time, exposure time and GPS (the duplicate search compares
exposure times: two shots of a burst are never copies). On 12 of the shared photos written as HEIC,
the phash of the still is within 14 of 576 bits of the HEIC's own (the duplicate threshold is 96).
"""

from __future__ import annotations

import io

from PIL import ExifTags, Image

from services.common.images import DecodeLimits, decode_image
from services.common.media.formats import sniff
from services.common.media.metadata import ExifBlocks

#: JPEG quality of the still (4:4:4 chroma).
STILL_QUALITY = 95
#: Stills whose decode costs many times a JPEG's; videos always get a still.
STILL_FORMATS = frozenset({"HEIC", "HEIF", "AVIF"})
#: EXIF tags the still keeps: when it was taken (the exposure time the duplicate search compares).
_KEPT_EXIF = (
    ExifTags.Base.DateTimeOriginal,
    ExifTags.Base.SubsecTimeOriginal,
    ExifTags.Base.DateTimeDigitized,
    ExifTags.Base.OffsetTimeOriginal,
)


def still_for_services(data: bytes, limits: DecodeLimits) -> bytes | None:
    """A JPEG of the picture when ``data`` is a video (its representative frame), a HEIC/HEIF or an
    AVIF (ImageError 4xx when it cannot be decoded); None for anything else, which the services get
    as it is."""
    found = sniff(data)
    if found is None or not (found.kind == "video" or found.name in STILL_FORMATS):
        return None
    decoded = decode_image(data, "RGB", limits=limits)
    out = io.BytesIO()
    exif = _capture_exif(decoded.image if found.kind == "video" else None, data)
    decoded.image.save(out, "JPEG", quality=STILL_QUALITY, subsampling=0, exif=exif)
    return out.getvalue()


def _capture_exif(video_frame: Image.Image | None, data: bytes) -> bytes:
    """The upload's capture time, exposure time and GPS as an EXIF block (orientation 1: the still
    is already turned); empty for a video."""
    if video_frame is not None:
        return b""
    from services.common.images import identify

    found = identify(data)
    if found.image is None:
        return b""
    blocks = ExifBlocks.of(found.image.getexif())
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1
    if ExifTags.Base.DateTime in blocks.ifd0:
        exif[ExifTags.Base.DateTime] = blocks.ifd0[ExifTags.Base.DateTime]
    kept = {tag: blocks.original(tag) for tag in _KEPT_EXIF if blocks.original(tag) is not None}
    if kept:
        exif.get_ifd(ExifTags.IFD.Exif).update(kept)
    if blocks.gps:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(blocks.gps)
    return exif.tobytes()
