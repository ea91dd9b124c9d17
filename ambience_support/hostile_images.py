"""Hostile images built in code: small files that decode into huge pictures, and headers that lie.

PNGs are written row by row through one zlib stream, so a 100 MP picture costs the generating
process a single row of memory (a 10000x10000 16-bit grey PNG is about 190 KiB).
"""

from __future__ import annotations

import struct
import zlib

from ambience_support.images import encode, synthetic_image

SIDE = 10_000  # 100 MP: the default pixel limit

#: PNG colour type and bit depth, and bytes per pixel (0 for 1-bit rows).
PNG_KINDS = {
    "gray16": (0, 16, 2),
    "rgba": (6, 8, 4),
    "bilevel": (0, 1, 0),
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def big_png(kind: str, width: int = SIDE, height: int = SIDE) -> bytes:
    """A ``width`` x ``height`` PNG (``gray16``, ``rgba`` or ``bilevel``): a vertical gradient in
    bands, every row constant, so it compresses to a few hundred KiB."""
    color_type, depth, pixel_bytes = PNG_KINDS[kind]
    row_bytes = (width + 7) // 8 if depth == 1 else width * pixel_bytes
    packer = zlib.compressobj(9)
    parts = []
    last_band = -1
    row = b""
    for y in range(height):
        band = y * 16 // height  # 16 bands: an image with structure, still tiny compressed
        if band != last_band:
            level = band * 17
            if depth == 1:
                row = b"\x00" + (b"\xff" if band % 2 else b"\x00") * row_bytes
            elif depth == 16:
                row = b"\x00" + struct.pack(">H", level * 257) * width
            else:
                row = b"\x00" + bytes([level, 255 - level, 128, 255 if band % 2 else 64]) * width
            last_band = band
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header claiming ``width`` x ``height`` with one row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * (min(width, 1 << 16) + 1)))
        + _chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(synthetic_image(3, (64, 48)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def iso_claiming(data: bytes, width: int, height: int) -> bytes:
    """A real HEIC or AVIF whose every ``ispe`` box (the image's declared extent) is patched to
    claim ``width`` x ``height``: a small file that declares a huge picture."""
    out = bytearray(data)
    start = 0
    while (at := out.find(b"ispe", start)) >= 0:
        struct.pack_into(">II", out, at + 8, width, height)  # after the box's version and flags
        start = at + 4
    return bytes(out)
