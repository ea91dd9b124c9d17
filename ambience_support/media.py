"""Files of every format a phone or camera writes, made in code: HEIC (pillow-heif), AVIF (Pillow), DNG
(PiDNG, optionally with a preview JPEG), MP4/MOV/MKV/WebM/AVI (PyAV), with the metadata cameras
write (EXIF capture time and GPS, QuickTime creation date and ISO 6709 location, display rotation),
and the broken or hostile variants of each (truncated, lying headers, huge frames, endless streams).
"""

from __future__ import annotations

import io
import struct
from datetime import datetime
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from ambience_support.images import encode, synthetic_image


def exif_block(
    when: datetime | None = None,
    gps: tuple[float, float] | None = None,
    orientation: int | None = None,
    subsec: str | None = None,
) -> Image.Exif:
    """EXIF as a camera writes it: DateTimeOriginal (+ SubSecTimeOriginal) in the Exif IFD, GPS in
    the GPS IFD, the orientation in IFD0."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if when is not None:
        text = when.strftime("%Y:%m:%d %H:%M:%S")
        exif[ExifTags.Base.DateTime] = text
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub[ExifTags.Base.DateTimeOriginal] = text
        if subsec is not None:
            sub[ExifTags.Base.SubsecTimeOriginal] = subsec
    if gps is not None:
        block = exif.get_ifd(ExifTags.IFD.GPSInfo)
        for (ref_tag, value_tag), value, signs in (
            ((ExifTags.GPS.GPSLatitudeRef, ExifTags.GPS.GPSLatitude), gps[0], "NS"),
            ((ExifTags.GPS.GPSLongitudeRef, ExifTags.GPS.GPSLongitude), gps[1], "EW"),
        ):
            block[ref_tag] = signs[0] if value >= 0 else signs[1]
            degrees = abs(value)
            minutes = (degrees % 1) * 60
            block[value_tag] = (float(int(degrees)), float(int(minutes)), round((minutes % 1) * 60, 4))
    return exif


def heic(
    img: Image.Image,
    exif: Image.Exif | None = None,
    quality: int = 85,
    thumbnail: int | None = None,
    tile: int | None = None,
) -> bytes:
    """``img`` as HEIC (HEVC in HEIF) by pillow-heif, with ``exif`` (its orientation becomes the
    container's rotation, as phones write it), a ``thumbnail`` of that long side (phones store one of
    320 px) and, with ``tile``, as a grid of tiles that size (iPhones write 512 px tiles)."""
    import pillow_heif

    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = exif.tobytes()
    if thumbnail is not None:
        kwargs["thumbnails"] = [thumbnail]
    if tile is not None:
        kwargs["tile_size"] = tile
    pillow_heif.from_pillow(img.convert("RGB")).save(buf, **kwargs)
    return buf.getvalue()


def avif(img: Image.Image, exif: Image.Exif | None = None, quality: int = 70) -> bytes:
    kwargs: dict[str, Any] = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = exif.tobytes()
    return encode(img.convert("RGB"), "AVIF", **kwargs)


def bayer(img: Image.Image, white: int = 4095) -> np.ndarray:
    """An RGGB colour-filter mosaic of ``img`` (12-bit values in uint16), what a sensor records."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint32) * white // 255
    mosaic = np.empty(rgb.shape[:2], np.uint16)
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return mosaic


def dng(
    img: Image.Image,
    when: datetime | None = None,
    orientation: int = 1,
    preview: Image.Image | None = None,
) -> bytes:
    """``img`` as a DNG (PiDNG): its RGGB mosaic, 12-bit, uncompressed, an identity colour matrix,
    DateTimeOriginal; ``preview``: a JPEG preview added as IFD0's next IFD (as cameras and
    converters store it)."""
    from pidng.core import RAW2DNG
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag

    width, height = img.size
    tags = DNGTags()
    tags.set(Tag.ImageWidth, width)
    tags.set(Tag.ImageLength, height)
    tags.set(Tag.TileWidth, width)
    tags.set(Tag.TileLength, height)
    tags.set(Tag.Orientation, orientation)
    tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    tags.set(Tag.SamplesPerPixel, 1)
    tags.set(Tag.BitsPerSample, 16)
    tags.set(Tag.CFARepeatPatternDim, [2, 2])
    tags.set(Tag.CFAPattern, CFAPattern.RGGB)
    tags.set(Tag.BlackLevel, 0)
    tags.set(Tag.WhiteLevel, 4095)
    identity = [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]
    tags.set(Tag.ColorMatrix1, identity)
    tags.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    tags.set(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    tags.set(Tag.Make, "ambience")
    tags.set(Tag.Model, "test sensor")
    if when is not None:
        tags.set(Tag.DateTimeOriginal, when.strftime("%Y:%m:%d %H:%M:%S"))
    tags.set(Tag.DNGVersion, DNGVersion.V1_4)
    tags.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    data = bytes(writer.convert(bayer(img)))
    return with_preview(data, preview) if preview is not None else data


def _ifd0(data: bytes) -> tuple[int, int]:
    """(offset of IFD0, its entry count) of a little-endian TIFF."""
    offset = struct.unpack_from("<I", data, 4)[0]
    return offset, struct.unpack_from("<H", data, offset)[0]


def with_preview(data: bytes, preview: Image.Image) -> bytes:
    """A little-endian TIFF-based RAW with a baseline JPEG preview appended as IFD0's next IFD."""
    jpeg = encode(preview.convert("RGB"), "JPEG", quality=90)
    out = bytearray(data)
    offset, count = _ifd0(data)
    next_pointer = offset + 2 + 12 * count
    while len(out) % 4:
        out.append(0)
    ifd_offset = len(out)
    entries_count = 10
    bits_offset = ifd_offset + 2 + 12 * entries_count + 4
    jpeg_offset = bits_offset + 8
    width, height = preview.size
    entries = [
        (254, 4, 1, 1),  # NewSubfileType: a reduced-resolution copy
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bits_offset),
        (259, 3, 1, 7),  # JPEG
        (262, 3, 1, 6),  # YCbCr
        (273, 4, 1, jpeg_offset),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(jpeg)),
    ]
    out += struct.pack("<H", entries_count)
    for tag, kind, n, value in entries:
        out += struct.pack("<HHII", tag, kind, n, value)
    out += struct.pack("<I", 0) + struct.pack("<HHHH", 8, 8, 8, 0) + jpeg
    struct.pack_into("<I", out, next_pointer, ifd_offset)
    return bytes(out)


def dng_claiming(width: int, height: int) -> bytes:
    """A small real DNG whose IFD0 is patched to claim a ``width`` x ``height`` sensor (its data
    stays 64x64): a RAW decompression bomb."""
    data = bytearray(dng(synthetic_image(5, (64, 64))))
    offset, count = _ifd0(bytes(data))
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257, 322, 323):  # ImageWidth, ImageLength, TileWidth, TileLength
            value = width if tag in (256, 322) else height
            struct.pack_into("<HI", data, entry + 2, 4, 1)
            struct.pack_into("<I", data, entry + 8, value)
    return bytes(data)


# -- video --------------------------------------------------------------------------------------

#: container -> (PyAV format, codec)
VIDEO_KINDS = {
    "mp4": ("mp4", "libx264"),
    "mov": ("mov", "libx264"),
    "m4v": ("ipod", "libx264"),
    "mkv": ("matroska", "libx264"),
    "webm": ("webm", "libvpx-vp9"),
    "avi": ("avi", "mpeg4"),
}


def scene(seed: int, size: tuple[int, int]) -> Image.Image:
    """A picture of hard-edged blocks (a 12x16 grid of random colours): its perceptual hash survives
    a video encoder (frames of one scene hash within about 30 of 576 bits, other scenes 270 and
    more), unlike a smooth gradient's, whose near-zero DCT coefficients flip."""
    grid = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize(size, Image.Resampling.NEAREST)


def video_frames(seed: int, count: int, size: tuple[int, int], black: int = 0) -> list[Image.Image]:
    """``count`` frames: ``black`` black ones (a fade-in), then a new :func:`scene` every 15."""
    frames = []
    for i in range(count):
        if i < black:
            frames.append(Image.new("RGB", size))
        else:
            frames.append(scene(seed + (i - black) // 15, size))
    return frames


def video(
    kind: str = "mp4",
    frames: list[Image.Image] | None = None,
    fps: int = 30,
    metadata: dict[str, str] | None = None,
    rotation: int = 0,
    gop: int | None = None,
    bit_rate: int | None = None,
) -> bytes:
    """A video of ``frames`` (default: 2 s at 320x240 opening with 5 black frames) in container
    ``kind`` (:data:`VIDEO_KINDS`). ``metadata``: container tags (MOV/MP4 keep any key, as Apple's
    ``com.apple.quicktime.*``); ``rotation``: the display rotation, degrees counter-clockwise;
    ``gop``: frames from a keyframe to the next; ``bit_rate``: a constant bitrate as a phone
    records (default: constant quality)."""
    import av

    frames = frames if frames is not None else video_frames(1, 2 * fps, (320, 240), black=5)
    fmt, codec = VIDEO_KINDS[kind]
    buf = io.BytesIO()
    options = {"movflags": "use_metadata_tags"} if kind in ("mp4", "mov", "m4v") else {}
    with av.open(buf, "w", format=fmt, options=options) as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if bit_rate is not None:
            stream.codec_context.bit_rate = bit_rate
        if codec == "libx264":
            quality = {} if bit_rate is not None else {"crf": "20"}
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", **quality}
        if rotation:
            stream.set_display_rotation(rotation)
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def still_of_video(data: bytes) -> Image.Image:
    """What the kit takes as the video's representative frame (RGB, as displayed)."""
    from services.common.images import decode_image

    return decode_image(data, "RGB").image


def video_claiming(width: int, height: int) -> bytes:
    """A real MKV of three MJPEG frames whose track header (PixelWidth / PixelHeight) and frame
    headers (SOF0) are patched to claim ``width`` x ``height`` (each below 65536): a frame-size
    bomb a few KiB long."""
    import av

    coded = (320, 256)  # two-byte values in the Matroska header, so any claim below 65536 fits
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height = coded
        stream.pix_fmt = "yuvj420p"
        for i in range(3):
            for packet in stream.encode(av.VideoFrame.from_image(synthetic_image(i, coded))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(buf.getvalue())
    for element, old, new in ((b"\xb0\x82", coded[0], width), (b"\xba\x82", coded[1], height)):
        at = data.find(element + struct.pack(">H", old))
        struct.pack_into(">H", data, at + 2, new)
    start = 0
    while (at := data.find(b"\xff\xc0", start)) >= 0:  # every frame's SOF0: height, then width
        struct.pack_into(">HH", data, at + 5, height, width)
        start = at + 2
    return bytes(data)


def video_without_keyframes(frames: int = 3200, size: tuple[int, int] = (64, 48)) -> bytes:
    """An MKV of ``frames`` H.264 P-frames whose keyframe was cut away (a stream recorded from the
    middle): every packet is read, none decodes into a picture, none is an error. An endless stream
    for the decoder."""
    import av

    base = np.asarray(synthetic_image(9, size))
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={frames * 2}:min-keyint={frames * 2}:scenecut=0",
        }
        for i in range(frames):
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, i, axis=1)), format="rgb24")
            for packet in stream.encode(image):
                if not packet.is_keyframe:
                    container.mux(packet)
        for packet in stream.encode():
            if not packet.is_keyframe:
                container.mux(packet)
    return buf.getvalue()


# -- colour profiles ------------------------------------------------------------------------------


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile that is sRGB with its red and green primaries swapped (and a description
    that is not "sRGB"): a picture tagged with it must come out with red and green exchanged once
    converted to sRGB, which shows the profile was applied."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack_from(">I", data, 128)[0]
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    red_tag, green_tag = bytes(data[red + 4 : red + 12]), bytes(data[green + 4 : green + 12])
    data[red + 4 : red + 12], data[green + 4 : green + 12] = green_tag, red_tag
    data[84:100] = bytes(16)  # the profile id (an MD5 of the content) no longer holds
    return bytes(data).replace("sRGB".encode("utf-16-be"), "wild".encode("utf-16-be"))
