"""gateway/photo_metadata.py: what an upload's header says, read without decoding pixels."""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image

from gateway.duplicates.exposure import different_exposures, exposure_consistent
from gateway.photo_metadata import read_metadata


def jpeg(exif: dict[int, str] | None = None, top: dict[int, str] | None = None) -> bytes:
    tags = Image.Exif()
    for tag, value in (top or {}).items():
        tags[tag] = value
    for tag, value in (exif or {}).items():
        tags.get_ifd(0x8769)[tag] = value
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "JPEG", exif=tags.tobytes())
    return buf.getvalue()


DATE_TIME, DATE_TIME_ORIGINAL, SUBSEC_ORIGINAL = 0x0132, 0x9003, 0x9291


def test_the_exposure_time_has_the_cameras_fraction_of_a_second() -> None:
    found = read_metadata(jpeg({DATE_TIME_ORIGINAL: "2024:05:01 10:00:07", SUBSEC_ORIGINAL: "042"}), "a.jpg")
    assert found["exposed_at"] == datetime(2024, 5, 1, 10, 0, 7, 42_000)
    assert found["exposure_subsecond"] is True
    assert found["captured_at"] == datetime(2024, 5, 1, 10, 0, 7)
    assert (found["width"], found["height"], found["file_name"]) == (64, 48, "a.jpg")


def test_an_editors_date_time_is_a_capture_time_but_no_exposure() -> None:
    found = read_metadata(jpeg(top={DATE_TIME: "2025:01:02 03:04:05"}), None)
    assert found["captured_at"] == datetime(2025, 1, 2, 3, 4, 5)
    assert found["exposed_at"] is None and found["exposure_subsecond"] is None


def test_a_bad_fraction_keeps_the_second() -> None:
    found = read_metadata(jpeg({DATE_TIME_ORIGINAL: "2024:05:01 10:00:07", SUBSEC_ORIGINAL: "x1"}), None)
    assert found["exposed_at"] == datetime(2024, 5, 1, 10, 0, 7) and found["exposure_subsecond"] is False


def test_two_exposures_differ_at_the_precision_both_have() -> None:
    at = datetime(2024, 5, 1, 10, 0, 7)
    burst = at.replace(microsecond=400_000)
    assert different_exposures((at, True), (burst, True))  # two frames within one second
    assert not different_exposures((burst, True), (at, False))  # a copy that dropped the fraction
    assert different_exposures((burst, True), (at.replace(second=8), False))
    assert not different_exposures(None, (at, True))  # unknown: no evidence
    assert not different_exposures((at, False), (at, False))


def test_a_copy_without_exif_joins_only_the_frame_it_is_nearest_to() -> None:
    first, second = datetime(2024, 5, 1, 10, 0, 0, 200_000), datetime(2024, 5, 1, 10, 0, 0, 450_000)
    exposure = {1: (first, True), 2: (second, True), 3: None, 4: None, 5: (first, False)}
    # 3 lost its EXIF: 12 bits from frame 1, 30 from frame 2 (and 1-2 directly, 20)
    links = [(2, 3, 30.0), (1, 3, 12.0), (1, 2, 20.0), (4, 3, 2.0), (5, 1, 8.0)]
    assert exposure_consistent(links, exposure) == [(1, 3, 12.0), (4, 3, 2.0), (5, 1, 8.0)]
    # recorded links come first whatever their distance: 3 already with frame 2, the new link to
    # frame 1 would join the two frames
    assert exposure_consistent([(1, 3, 1.0)], exposure, pinned=[(2, 3, 30.0)]) == []
    # without any exposure time nothing is left out
    assert exposure_consistent(links, {}) == links
