"""HEIC/HEIF stills through pillow-heif, registered with Pillow once, on first need.

pillow-heif's opener reads the header lazily (size, EXIF) like any Pillow format; libheif applies
the container's rotation and mirroring when it decodes and resets the EXIF orientation to 1, so the
picture comes out as displayed. ``draft`` picks an embedded thumbnail that is at least the size asked
for (phones store a 320 px one), which is how a feature that needs a small picture skips decoding the
full one. AVIF is read by Pillow itself (``PIL.features.check("avif")``).
"""

from __future__ import annotations

import threading

from PIL import features

_lock = threading.Lock()
_registered = False


def register_heif() -> bool:
    """Register pillow-heif's HEIF opener with Pillow (once per process); False when pillow-heif is
    not installed."""
    global _registered
    if _registered:
        return True
    with _lock:
        if not _registered:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                return False
            # Decode threads: requests already run in parallel; two keep one HEIC's latency low.
            register_heif_opener(thumbnails=True, decode_threads=2)
            _registered = True
    return True


def avif_supported() -> bool:
    return bool(features.check("avif"))
