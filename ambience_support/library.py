"""A photo library with a life in it, made in code: photos carrying EXIF capture times and GPS
positions (as a phone writes them), for the library's tests, its browser tests and the page's
screenshots.

:data:`TRIP_LIBRARY` is two years of a person living in Lisbon: days at home in May and June 2024,
a weekend in Paris (17-19 May 2024, with a video), a week in Porto (3-9 June 2024), a day at home
on 14 May in 2022 and 2023 (for "on this day"), a photo with a time and no position, two without
EXIF at all, and a re-encoded copy of one home photo. :func:`with_exif` writes any picture with a
time and a place.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from PIL import Image

from ambience_support.media import exif_block, scene, video, video_frames

LISBON = (38.7223, -9.1393)
PARIS = (48.8566, 2.3522)
PORTO = (41.1496, -8.6109)


def with_exif(
    img: Image.Image, taken: datetime | None = None, gps: tuple[float, float] | None = None, quality: int = 92
) -> bytes:
    """``img`` as a JPEG with a camera's EXIF: DateTimeOriginal ``taken`` (camera-local) and the GPS
    position ``gps`` (degrees, minutes and seconds, with N/S and E/W references)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, exif=exif_block(taken, gps).tobytes())
    return buf.getvalue()


@dataclass(frozen=True)
class PlannedPhoto:
    """One image of a made-up library: its id, when and where it was taken (None: the file does not
    say), what it is (a label for tests and screenshots), whether it is a video, and the id of the
    photo it is a copy of."""

    image_id: int
    taken: datetime | None
    gps: tuple[float, float] | None
    label: str
    video: bool = False
    copy_of: int | None = None


def _days(
    first: datetime, count: int, gps: tuple[float, float], start_id: int, label: str
) -> list[PlannedPhoto]:
    # a photo a day, a few minutes earlier each day: consecutive photos stay under a day apart
    return [
        PlannedPhoto(start_id + k, first + timedelta(days=k, minutes=-10 * k), gps, label)
        for k in range(count)
    ]


def _home(ids: range, days: list[str]) -> list[PlannedPhoto]:
    return [
        PlannedPhoto(i, datetime.fromisoformat(f"{d}T18:30:00"), LISBON, "home")
        for i, d in zip(ids, days, strict=True)
    ]


TRIP_LIBRARY: list[PlannedPhoto] = [
    # at home in Lisbon, May and June 2024 (before, between and after the trips)
    *_home(
        range(1, 11),
        [
            "2024-05-01",
            "2024-05-03",
            "2024-05-06",
            "2024-05-10",
            "2024-05-13",
            "2024-05-22",
            "2024-05-25",
            "2024-05-28",
            "2024-06-12",
            "2024-06-15",
        ],
    ),
    # a weekend in Paris: four photos and a video
    PlannedPhoto(11, datetime(2024, 5, 17, 19, 0), PARIS, "paris"),
    PlannedPhoto(12, datetime(2024, 5, 18, 10, 0), (48.8584, 2.2945), "paris"),
    PlannedPhoto(13, datetime(2024, 5, 18, 16, 0), (48.8867, 2.3431), "paris"),
    PlannedPhoto(14, datetime(2024, 5, 19, 11, 0), PARIS, "paris"),
    PlannedPhoto(15, datetime(2024, 5, 18, 15, 0), PARIS, "paris", video=True),
    # a week in Porto, a photo a day
    *_days(datetime(2024, 6, 3, 11, 0), 7, PORTO, 21, "porto"),
    # on this day, in earlier years: at home on 14 May 2022 and 15 May 2023
    PlannedPhoto(31, datetime(2022, 5, 14, 12, 0), LISBON, "home"),
    PlannedPhoto(32, datetime(2023, 5, 15, 12, 0), LISBON, "home"),
    # a time without a place (a camera without GPS), then two files that say nothing
    PlannedPhoto(41, datetime(2024, 5, 30, 9, 0), None, "no place"),
    PlannedPhoto(42, None, None, "no exif"),
    PlannedPhoto(43, None, None, "no exif"),
    # a half-size re-encoded copy of a home photo (its EXIF kept): a copies group
    PlannedPhoto(51, datetime.fromisoformat("2024-05-06T18:30:00"), LISBON, "home", copy_of=3),
]


def iso6709(gps: tuple[float, float]) -> str:
    return f"{gps[0]:+08.4f}{gps[1]:+09.4f}/"


def planned_file(photo: PlannedPhoto, picture: Image.Image | None = None) -> tuple[str, bytes]:
    """The file of ``photo``: a JPEG of ``picture`` (default: a scene of its own, whose perceptual
    hash is far from every other's) with its EXIF, or, for a video, a second of MOV with Apple's
    creation date (camera-local, with an offset) and ISO 6709 location. A copy is the picture at
    half size, re-encoded (pass the original's picture)."""
    if photo.video:
        metadata = {}
        if photo.taken is not None:
            metadata["com.apple.quicktime.creationdate"] = photo.taken.strftime("%Y-%m-%dT%H:%M:%S+0200")
        if photo.gps is not None:
            metadata["com.apple.quicktime.location.ISO6709"] = iso6709(photo.gps)
        frames = video_frames(photo.image_id * 7, 20, (320, 240))
        return f"IMG_{photo.image_id:04d}.MOV", video("mov", frames, fps=20, metadata=metadata)
    seed = photo.copy_of if photo.copy_of is not None else photo.image_id
    img = picture if picture is not None else scene(seed * 7, (400, 300))
    if photo.copy_of is not None:
        img = img.resize((img.width // 2, img.height // 2))
        return f"IMG_{photo.image_id:04d}.jpg", with_exif(img, photo.taken, photo.gps, quality=75)
    return f"IMG_{photo.image_id:04d}.jpg", with_exif(img, photo.taken, photo.gps)


def add_planned(url: str, photo: PlannedPhoto) -> None:
    """Add ``photo`` (its planned file) to the gateway at ``url`` under its own image id."""
    name, data = planned_file(photo)
    r = httpx.post(
        url + "/calculate_all_image_features",
        files={"image": (name, data)},
        data={"image_id": photo.image_id},
        timeout=120,
    )
    assert r.status_code == 200, r.text
