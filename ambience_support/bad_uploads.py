"""Uploads every image route must refuse with a clear 4xx: broken files of each kind a phone or
camera writes, built in the test from the other support modules."""

from __future__ import annotations

from functools import cache

from PIL import Image

from ambience_support import media
from ambience_support.images import encode, png_bomb, synthetic_image


@cache
def bad_uploads() -> list[tuple[str, bytes, int]]:
    """(label, upload bytes, expected status) that every image route must refuse with a clear 4xx:
    broken files of the phone and camera formats too (ambience_support/media.py)."""
    heic = media.heic(synthetic_image(2, (96, 64)))
    clip = media.video("mp4", [synthetic_image(3, (96, 64))] * 8)
    return [
        ("empty upload", b"", 422),
        ("text file named .jpg", b"this is not an image\n" * 10, 422),
        ("1x1 image", encode(Image.new("RGB", (1, 1), "red"), "PNG"), 422),
        ("decompression bomb", png_bomb(), 413),
        ("truncated JPEG", encode(synthetic_image(1))[:600], 422),
        ("truncated HEIC", heic[: len(heic) // 3], 422),
        ("truncated MP4", clip[: len(clip) // 2], 422),
        ("a QuickTime header and noise", b"\x00\x00\x00\x14ftypqt  " + bytes(range(256)) * 4, 422),
    ]
