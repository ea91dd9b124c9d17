"""Videos at the gateway: the representative frame is taken once, here, and that still is what every
service gets (and what the spool keeps for retries), instead of the video itself.

Why (measured by bench/decode_bench.py, docs/benchmarks.md): a video costs each service an open, a
seek and a frame decode, and its whole file on the wire; with the still, the gateway pays that decode
once and each service receives a JPEG of a few hundred KB that it decodes in milliseconds (at
1080p, a fan-out to N services costs about one video decode instead of N, and moves N JPEGs instead
of N videos). The services' upload limits then never have to fit a video either. The video itself is
still read here for what only it has (duration, creation time, location: the catalog's metadata),
and a video sent straight to one service is decoded there by the same kit path, so both ways give
the same frame.

The still is a JPEG at quality 95 with full-resolution chroma: a video frame is already lossy, and
at that quality the re-encoding moves a 576-bit pHash by a few bits at most, far below any duplicate
threshold, while a PNG would be five to ten times larger.
"""

from __future__ import annotations

import io

from services.common.images import DecodeLimits, decode_image
from services.common.media.formats import sniff

#: JPEG quality of the still sent for a video (4:4:4 chroma).
STILL_QUALITY = 95


def video_still(data: bytes, limits: DecodeLimits) -> bytes | None:
    """A JPEG of the representative frame when ``data`` is a video (ImageError 4xx when the video
    cannot be decoded); None for anything else, which the services get as it is."""
    found = sniff(data)
    if found is None or found.kind != "video":
        return None
    frame = decode_image(data, "RGB", limits=limits).image
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=STILL_QUALITY, subsampling=0)
    return out.getvalue()
