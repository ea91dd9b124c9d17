"""The kit's decode path for every file a phone or camera writes: HEIC, AVIF, DNG (PiDNG), videos
(PyAV) made here, decoded through services.common.images, their metadata through
services.common.media.metadata, and the broken or hostile variants of each refused with a 4xx that
names the problem and the format."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from functools import cache

import numpy as np
import pytest
from PIL import Image

from ambience_support import media
from ambience_support.images import encode, synthetic_image
from services.common.images import DecodeLimits, ImageError, decode_image, identify, open_image
from services.common.limits import MemoryBudget
from services.common.media.formats import ACCEPTED, sniff
from services.common.media.metadata import read_media_metadata

WHEN = datetime(2024, 5, 1, 10, 0, 7)
PARIS = (48.8577, 2.2945)


@cache
def picture() -> Image.Image:
    return synthetic_image(21, (640, 480))


def correlation(a: Image.Image, b: Image.Image) -> float:
    """Pearson correlation of two pictures in grey, ``b`` resized to ``a``."""
    x = np.asarray(a.convert("L"), np.float64).ravel()
    y = np.asarray(b.convert("L").resize(a.size), np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


@cache
def files() -> dict[str, bytes]:
    """One file of each kind, made once per test session (the videos take a few hundred ms)."""
    img = picture()
    return {
        "heic": media.heic(img, media.exif_block(WHEN, PARIS, orientation=6, subsec="250")),
        "avif": media.avif(img, media.exif_block(WHEN, orientation=6)),
        "dng": media.dng(img, when=WHEN),
        "dng_preview": media.dng(synthetic_image(22, (1024, 768)), preview=synthetic_image(23, (512, 384))),
        **{kind: media.video(kind) for kind in media.VIDEO_KINDS},
        "mov_apple": media.video(
            "mov",
            metadata={
                "creation_time": "2024-05-01T08:00:07.000000Z",
                "com.apple.quicktime.creationdate": "2024-05-01T10:00:07+0200",
                "com.apple.quicktime.location.ISO6709": "+48.8577+002.2945+035.000/",
            },
            rotation=90,
        ),
    }


@pytest.mark.parametrize(
    ("key", "name", "kind"),
    [
        ("heic", "HEIC", "photo"),
        ("avif", "AVIF", "photo"),
        ("dng", "DNG", "photo"),
        ("mp4", "MP4", "video"),
        ("mov", "MOV", "video"),
        ("m4v", "M4V", "video"),
        ("mkv", "MKV", "video"),
        ("webm", "WEBM", "video"),
        ("avi", "AVI", "video"),
    ],
)
def test_each_format_is_recognised_by_its_magic_bytes(key: str, name: str, kind: str) -> None:
    found = identify(files()[key])
    assert (found.format, found.kind) == (name, kind)


def test_raw_headers_of_other_cameras_and_plain_files() -> None:
    tiff = b"II*\x00\x08\x00\x00\x00"
    assert sniff(tiff + b"CR\x02\x00" + bytes(64)).name == "CR2"
    assert sniff(b"IIRO\x08\x00\x00\x00" + bytes(64)).name == "ORF"
    assert sniff(b"IIU\x00\x08\x00\x00\x00" + bytes(64)).name == "RW2"
    assert sniff(b"FUJIFILMCCD-RAW 0201" + bytes(64)).name == "RAF"
    assert sniff(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + bytes(64)).name == "CR3"
    assert sniff(encode(picture(), "TIFF")) is None  # a plain TIFF is Pillow's
    assert sniff(encode(picture(), "JPEG")) is None


def test_heic_is_decoded_as_displayed_and_from_its_thumbnail_when_small_is_enough() -> None:
    data = files()["heic"]
    full = decode_image(data)
    assert full.format == "HEIC" and full.image.size == (480, 640)  # EXIF orientation 6: portrait
    assert correlation(picture().transpose(Image.Transpose.ROTATE_270), full.image) > 0.95
    small = decode_image(data, "L", draft_size=64)
    assert 64 <= min(small.image.size) < 480 and small.full_size == (480, 640)


def test_avif_is_decoded_and_turned() -> None:
    decoded = decode_image(files()["avif"])
    assert decoded.format == "AVIF" and decoded.image.size == (480, 640)
    assert correlation(picture().transpose(Image.Transpose.ROTATE_270), decoded.image) > 0.95


def test_dng_without_preview_is_demosaiced_at_half_size() -> None:
    decoded = decode_image(files()["dng"])
    assert decoded.format == "DNG" and decoded.image.size == (320, 240)
    assert decoded.original_size == (640, 480)
    assert correlation(picture(), decoded.image) > 0.9


def test_dng_preview_is_used_when_it_is_large_enough_for_the_feature() -> None:
    """The preview (another picture here, to tell which was decoded) serves a feature that needs
    256 px; the full picture (1024 px wanted, preview 384 px) comes from the mosaic."""
    data = files()["dng_preview"]
    decoded = decode_image(data, draft_size=256)
    assert correlation(synthetic_image(23, (512, 384)), decoded.image) > 0.95
    assert decoded.full_size == (1024, 768)  # the RAW's picture, whichever served
    from_mosaic = decode_image(data).image
    assert from_mosaic.size == (512, 384)
    assert correlation(synthetic_image(22, (1024, 768)), from_mosaic) > 0.9


def test_dng_orientation_turns_the_picture() -> None:
    decoded = decode_image(media.dng(picture(), orientation=6))
    assert decoded.image.size == (240, 320) and decoded.full_size == (480, 640)


@pytest.mark.parametrize("kind", list(media.VIDEO_KINDS))
def test_a_video_gives_its_first_picture_past_the_black_opening(kind: str) -> None:
    decoded = decode_image(files()[kind], draft_size=120)
    assert decoded.kind == "video" and decoded.format == kind.upper()
    assert decoded.full_size == (320, 240) and min(decoded.image.size) >= 120
    assert correlation(media.scene(1, (320, 240)), decoded.image) > 0.9


def test_video_display_rotation_is_applied() -> None:
    decoded = decode_image(files()["mov_apple"])
    assert decoded.image.size == (240, 320)


def test_video_metadata_camera_local_time_location_and_duration() -> None:
    found = read_media_metadata(files()["mov_apple"])
    assert (found["kind"], found["format"]) == ("video", "MOV")
    assert (found["width"], found["height"]) == (240, 320)
    assert found["captured_at"] == WHEN  # Apple's local creation date, not the UTC creation_time
    assert found["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert (found["gps_latitude"], found["gps_longitude"]) == pytest.approx(PARIS)
    utc_only = read_media_metadata(media.video("mp4", metadata={"creation_time": "2024-05-01T08:00:07Z"}))
    assert utc_only["captured_at"] == datetime(2024, 5, 1, 8, 0, 7)


def test_heic_and_raw_metadata_match_what_jpeg_gives() -> None:
    heic = read_media_metadata(files()["heic"])
    assert (heic["kind"], heic["format"], heic["width"], heic["height"]) == ("photo", "HEIC", 480, 640)
    assert heic["captured_at"] == WHEN
    assert heic["exposed_at"] == WHEN.replace(microsecond=250_000) and heic["exposure_subsecond"] is True
    assert (heic["gps_latitude"], heic["gps_longitude"]) == pytest.approx(PARIS, abs=1e-4)
    raw = read_media_metadata(files()["dng"])
    assert (raw["format"], raw["width"], raw["height"], raw["captured_at"]) == ("DNG", 640, 480, WHEN)
    avif = read_media_metadata(files()["avif"])
    assert (avif["width"], avif["height"], avif["orientation"]) == (480, 640, 6)


def test_embedded_colour_profile_is_converted_to_srgb() -> None:
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    tagged = encode(red, "PNG", icc_profile=media.swapped_primaries_profile())
    r, g, _ = decode_image(tagged).image.getpixel((5, 5))
    assert g > 200 and r < 60  # its "red" is sRGB's green
    grey = decode_image(tagged, "L").image.getpixel((5, 5))
    assert grey > 120  # converted before the grey conversion: green is bright, red is not


HEIC_WITHOUT_A_PICTURE = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40)
#: label -> (the file, built when the test runs; status; words in the message)
BAD: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "truncated HEIC": (lambda: files()["heic"][:300], 422, "HEIC"),
    "truncated AVIF": (lambda: files()["avif"][:200], 422, "AVIF"),
    "HEIC without a picture": (lambda: HEIC_WITHOUT_A_PICTURE, 422, "HEIC"),
    "truncated DNG": (lambda: files()["dng"][:3000], 422, "DNG"),
    "DNG claiming a 60000x60000 sensor": (lambda: media.dng_claiming(60000, 60000), 413, "60000x60000"),
    "truncated MP4": (lambda: files()["mp4"][: len(files()["mp4"]) // 2], 422, "MP4"),
    "truncated MKV": (lambda: files()["mkv"][:400], 422, "MKV"),
    "MKV claiming 40000x40000 frames": (lambda: media.video_claiming(40000, 40000), 422, "MKV"),
    "video without a keyframe": (media.video_without_keyframes, 422, "3000 packets"),
    "random bytes after an ftyp box": (
        lambda: b"\x00\x00\x00\x14ftypqt  " + bytes(range(256)) * 8,
        422,
        "MOV",
    ),
}


@pytest.mark.parametrize("label", list(BAD))
def test_broken_and_hostile_files_get_a_4xx_naming_the_format(label: str) -> None:
    build, status, words = BAD[label]
    data = build()
    budget = MemoryBudget(256 << 20, "decode")
    with pytest.raises(ImageError) as err:
        decode_image(data, limits=DecodeLimits(budget=budget))
    assert err.value.status == status, err.value.message
    assert words in err.value.message
    assert budget.used == 0


def test_the_video_time_limit_ends_a_decode() -> None:
    with pytest.raises(ImageError) as err:
        decode_image(files()["mp4"], limits=DecodeLimits(video_timeout_s=1e-4))
    assert err.value.status == 422 and "time limit" in err.value.message


def test_unknown_data_lists_every_accepted_format() -> None:
    with pytest.raises(ImageError) as err:
        open_image(b"%PDF-1.4 not an image" * 4)
    assert err.value.status == 422 and ACCEPTED in err.value.message
    for word in ("HEIC", "AVIF", "DNG", "MP4", "MKV"):
        assert word in err.value.message
    with pytest.raises(ImageError) as err:  # open_image is for what Pillow opens lazily
        open_image(files()["mp4"])
    assert err.value.status == 415


def test_a_decode_of_each_kind_stays_in_its_budget_and_frees_it() -> None:
    budget = MemoryBudget(1 << 30, "decode")
    for key in ("heic", "avif", "dng", "mp4"):
        decode_image(files()[key], limits=DecodeLimits(budget=budget))
        assert budget.used == 0


def test_16_bit_png_with_a_profile_keeps_its_depth_scaling() -> None:
    ramp = (np.linspace(0, 65535, 256)[None, :].repeat(16, 0)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG", icc_profile=media.swapped_primaries_profile())
    out = np.asarray(decode_image(buf.getvalue(), "L").image)
    assert out[0, 0] == 0 and out[0, -1] == 255
