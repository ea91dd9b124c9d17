"""What a file is, from its first bytes: the format a phone or camera wrote, and which decoder takes it.

Sniffing by magic bytes, not by file name (an upload's name may lie or be absent):

- ISO base media (``ftyp`` box): the major brand, then the compatible ones, tell HEIC/HEIF and AVIF
  (stills), Canon CR3 (RAW) and MP4, M4V, 3GP and QuickTime MOV (video);
- EBML: Matroska (MKV) or WebM by the DocType; RIFF ``AVI ``: AVI;
- TIFF-based RAW: Canon CR2 by its marker, Olympus ORF and Panasonic RW2 by their own TIFF magic,
  Fujifilm RAF by its header, and DNG / NEF / ARW / PEF / SRW by their IFDs (a DNGVersion tag, or a
  colour-filter-array image in an IFD or SubIFD: what a camera's raw data is, and a plain TIFF never
  has), named by the camera maker.

Anything else is left to Pillow (JPEG, PNG, WebP, GIF, BMP, plain TIFF) and the allow-list in
:mod:`services.common.images`. Pure functions over bytes; nothing is decoded here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

Kind = Literal["photo", "video"]
Decoder = Literal["pillow", "raw", "video"]


@dataclass(frozen=True)
class MediaFormat:
    """A recognised format: its name (as errors and the catalog show it), what it holds, and the
    decoder that reads it."""

    name: str
    kind: Kind
    decoder: Decoder


#: File name suffixes of what the decode path takes, for folder walks (``ambience index``/``import``).
PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    | {".heic", ".heif", ".hif", ".avif"}
)
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".raf", ".rw2", ".pef", ".srw"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".3gp", ".webm", ".mkv", ".avi"})
MEDIA_SUFFIXES = PHOTO_SUFFIXES | RAW_SUFFIXES | VIDEO_SUFFIXES

#: What an error about an unrecognised upload lists.
ACCEPTED = (
    "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF, camera RAW (DNG, CR2, CR3, NEF, ARW, ORF, RAF, RW2) "
    "or video (MP4, MOV, M4V, WebM, MKV, AVI)"
)

_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_MOV_BRANDS = frozenset({b"qt  "})
_M4V_BRANDS = frozenset({b"M4V ", b"M4VH", b"M4VP"})
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41", b"mp42"}
    | {b"avc1", b"dash", b"mmp4", b"MSNV", b"XAVC", b"f4v ", b"NDAS", b"FACE"}
)
#: QuickTime files from before the ``ftyp`` box begin with one of these atoms.
_LEGACY_MOV_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"pnot"})

#: TIFF photometric interpretations of camera raw data: colour filter array, linear raw (DNG).
_RAW_PHOTOMETRIC = frozenset({32803, 34892})
_MAKERS = (
    ("NIKON", "NEF"),
    ("SONY", "ARW"),
    ("CANON", "CR2"),
    ("PENTAX", "PEF"),
    ("RICOH", "PEF"),
    ("SAMSUNG", "SRW"),
    ("OLYMPUS", "ORF"),
    ("OM DIGITAL", "ORF"),
    ("PANASONIC", "RW2"),
    ("LEICA", "DNG"),
)
#: Bounds of the IFD walk: a hostile file cannot make sniffing expensive.
_MAX_IFDS = 32
_MAX_ENTRIES = 1024


def sniff(data: bytes) -> MediaFormat | None:
    """The format of ``data`` when it is one this module recognises; None leaves it to Pillow."""
    head = data[:64]
    if head[4:8] == b"ftyp":
        return _iso_media(data)
    if head[4:8] in _LEGACY_MOV_ATOMS:
        return MediaFormat("MOV", "video", "video")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        doctype = head[:48]
        if b"webm" in doctype:
            return MediaFormat("WEBM", "video", "video")
        return MediaFormat("MKV", "video", "video")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaFormat("AVI", "video", "video")
    if head[:16] == b"FUJIFILMCCD-RAW ":
        return _raw("RAF")
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return _raw("ORF")
    if head[:4] == b"IIU\x00":
        return _raw("RW2")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        if head[8:10] == b"CR":
            return _raw("CR2")
        name = tiff_raw_name(data)
        return _raw(name) if name else None
    return None


def _raw(name: str) -> MediaFormat:
    return MediaFormat(name, "photo", "raw")


def brands(data: bytes) -> tuple[bytes, set[bytes]]:
    """The major brand of an ISO base media file and its compatible brands."""
    size = int.from_bytes(data[:4], "big")
    end = min(max(size, 16), 4096, len(data))
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    return major, compatible


def _iso_media(data: bytes) -> MediaFormat | None:
    major, compatible = brands(data)
    for brand in (major, *sorted(compatible - {major})):
        name = _brand_name(brand, compatible)
        if name is not None:
            return name
    return None


def _brand_name(brand: bytes, compatible: set[bytes]) -> MediaFormat | None:
    if brand == b"crx ":
        return _raw("CR3")
    if brand in _AVIF_BRANDS:
        return MediaFormat("AVIF", "photo", "pillow")
    if brand in _HEIC_BRANDS:
        return MediaFormat("HEIC", "photo", "pillow")
    if brand in _HEIF_BRANDS:
        if compatible & _AVIF_BRANDS:
            return MediaFormat("AVIF", "photo", "pillow")
        if compatible & _HEIC_BRANDS:
            return MediaFormat("HEIC", "photo", "pillow")
        return MediaFormat("HEIF", "photo", "pillow")
    if brand in _MOV_BRANDS:
        return MediaFormat("MOV", "video", "video")
    if brand in _M4V_BRANDS:
        return MediaFormat("M4V", "video", "video")
    if brand.startswith(b"3g"):
        return MediaFormat("3GP", "video", "video")
    if brand in _MP4_BRANDS:
        return MediaFormat("MP4", "video", "video")
    return None


def tiff_ifds(data: bytes) -> list[dict[int, tuple[int, int, int]]]:
    """The IFDs of a TIFF-structured file, IFD0's chain and every SubIFD: per IFD, tag -> (type,
    count, value or offset). Bounded (a few dozen IFDs, 1024 entries each); a broken structure
    ends the walk where it breaks."""
    if len(data) < 8:
        return []
    endian = "<" if data[:2] == b"II" else ">"
    ifds: list[dict[int, tuple[int, int, int]]] = []
    pending = [struct.unpack_from(endian + "I", data, 4)[0]]
    seen: set[int] = set()
    while pending and len(ifds) < _MAX_IFDS:
        offset = pending.pop(0)
        if offset in seen or offset < 8 or offset + 2 > len(data):
            continue
        seen.add(offset)
        count = struct.unpack_from(endian + "H", data, offset)[0]
        if count > _MAX_ENTRIES or offset + 2 + 12 * count + 4 > len(data):
            continue
        entries: dict[int, tuple[int, int, int]] = {}
        for i in range(count):
            tag, kind, n = struct.unpack_from(endian + "HHI", data, offset + 2 + 12 * i)
            if kind == 3 and n <= 2:  # SHORT held in the entry
                value = struct.unpack_from(endian + "H", data, offset + 10 + 12 * i)[0]
            else:
                value = struct.unpack_from(endian + "I", data, offset + 10 + 12 * i)[0]
            entries[tag] = (kind, n, value)
        ifds.append(entries)
        pending.append(struct.unpack_from(endian + "I", data, offset + 2 + 12 * count)[0])
        sub = entries.get(330)  # SubIFDs
        if sub is not None:
            _, n, value = sub
            if n == 1:
                pending.append(value)
            elif value + 4 * min(n, _MAX_IFDS) <= len(data):
                pending.extend(struct.unpack_from(endian + f"{min(n, _MAX_IFDS)}I", data, value))
    return ifds


def _ascii(data: bytes, entry: tuple[int, int, int]) -> str:
    kind, n, value = entry
    if kind != 2:
        return ""
    if n <= 4:  # held in the entry: too short for a maker's name
        return ""
    raw = data[value : value + min(n, 256)]
    return raw.split(b"\x00")[0].decode("latin-1").strip()


def tiff_raw_name(data: bytes) -> str | None:
    """DNG, NEF, ARW, ... when a TIFF-magic file holds camera raw data; None for a plain TIFF."""
    ifds = tiff_ifds(data)
    if not ifds:
        return None
    if 50706 in ifds[0]:  # DNGVersion
        return "DNG"
    if not any(ifd.get(262, (0, 0, 0))[2] in _RAW_PHOTOMETRIC for ifd in ifds):
        return None
    make = _ascii(data, ifds[0][271]).upper() if 271 in ifds[0] else ""
    return next((name for maker, name in _MAKERS if make.startswith(maker)), "RAW")
