"""Phone and camera files through a real gateway over HTTP, in front of real phash and color services
and a real catalog: HEIC, AVIF, DNG and videos made here are added with one call each, their
metadata reaches /image_info, a video is found again by a search with one of its frames, the halves
of a Live Photo name each other, previews are made, and broken files of each kind get a 4xx."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from ambience_support import media
from ambience_support.images import encode, synthetic_image
from ambience_support.pg import TestServer
from ambience_support.photos import REPO
from ambience_support.stacks import GatewayStack, start_stack, wait_complete
from gateway.media import still_for_services
from gateway.photo_metadata import read_metadata
from services.common.images import DecodeLimits

WHEN = datetime(2024, 5, 1, 10, 0, 7)
PARIS = (48.8577, 2.2945)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("media"), pg_server, ["phash", "color"])
    yield st
    st.stop()


def add(url: str, image_id: int, data: bytes, name: str) -> httpx.Response:
    return httpx.post(
        url + "/calculate_all_image_features",
        files={"image": (name, data)},
        data={"image_id": str(image_id)},
        timeout=60,
    )


def added(url: str, image_id: int, data: bytes, name: str) -> None:
    reply = add(url, image_id, data, name)
    assert reply.status_code == 200, reply.text
    assert all(e["status"] in ("ok", "queued") for e in reply.json()), reply.text
    wait_complete(url, [image_id])  # its facts, thumbnail and links follow the add


def info(url: str, *image_ids: int) -> dict[str, Any]:
    reply = httpx.post(url + "/image_info", json={"image_ids": list(image_ids)}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


@cache
def clip() -> bytes:
    """2 s of video opening with black frames, shot in Paris, with Apple's local creation date."""
    frames = media.video_frames(31, 60, (320, 240), black=5)
    return media.video(
        "mov",
        frames,
        metadata={
            "com.apple.quicktime.creationdate": "2024-05-01T10:00:08+0200",
            "com.apple.quicktime.location.ISO6709": "+48.8577+002.2945+035.000/",
        },
    )


def frame_at(data: bytes, seconds: float) -> Image.Image:
    import av

    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                return frame.to_image()
    raise AssertionError(f"no frame at {seconds} s")


def test_heic_capture_time_and_gps_reach_image_info(stack: GatewayStack) -> None:
    exif = media.exif_block(WHEN, PARIS, orientation=6, subsec="5")
    added(stack.url, 101, media.heic(synthetic_image(30, (400, 300)), exif), "IMG_0101.HEIC")
    found = info(stack.url, 101)["101"]
    assert (found["kind"], found["format"], found["width"], found["height"]) == ("photo", "HEIC", 300, 400)
    assert found["captured_at"] == "2024-05-01T10:00:07"
    assert found["exposed_at"] == "2024-05-01T10:00:07.500000" and found["exposure_subsecond"] is True
    assert (found["gps_latitude"], found["gps_longitude"]) == pytest.approx(PARIS, abs=1e-4)
    assert found["duration_s"] is None and found["live_photo_of"] is None
    preview = httpx.get(stack.url + "/thumbnails/101", timeout=30)
    assert preview.status_code == 200
    assert Image.open(io.BytesIO(preview.content)).size == (192, 256)  # portrait, as displayed


def test_avif_and_dng_are_added_and_described(stack: GatewayStack) -> None:
    added(stack.url, 102, media.avif(synthetic_image(32, (320, 240))), "a.avif")
    added(stack.url, 103, media.dng(synthetic_image(33, (640, 480)), when=WHEN), "DSC_0103.DNG")
    found = info(stack.url, 102, 103)
    assert (found["102"]["format"], found["102"]["width"]) == ("AVIF", 320)
    assert (found["103"]["format"], found["103"]["width"], found["103"]["captured_at"]) == (
        "DNG",
        640,
        "2024-05-01T10:00:07",
    )


def test_a_video_is_described_and_found_by_one_of_its_frames(stack: GatewayStack) -> None:
    added(stack.url, 110, clip(), "clip.mov")
    found = info(stack.url, 110)["110"]
    assert (found["kind"], found["format"], found["width"], found["height"]) == ("video", "MOV", 320, 240)
    assert found["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert found["captured_at"] == "2024-05-01T10:00:08"
    assert (found["gps_latitude"], found["gps_longitude"]) == pytest.approx(PARIS)
    # a frame of the clip past its black opening, grabbed as a user's player would (PyAV, not the
    # kit), sent as a PNG, then as a JPEG
    frame = frame_at(clip(), 0.4)
    for query in (encode(frame, "PNG"), encode(frame, "JPEG", quality=85)):
        duplicates = httpx.post(
            stack.url + "/reverse_search", files={"image": ("frame.png", query)}, data={"find_duplicate": "1"}
        ).json()
        assert [hit["image_id"] for hit in duplicates["duplicate"]] == [110]
        similar = httpx.post(stack.url + "/reverse_search", files={"image": ("frame.png", query)}).json()
        assert similar["color_res"][0]["image_id"] == 110
    assert httpx.get(stack.url + "/thumbnails/110", timeout=30).status_code == 200


def test_a_video_sent_straight_to_a_service_and_as_a_query(stack: GatewayStack) -> None:
    """Without the gateway's still: the service decodes the video itself, into the same frame."""
    phash = stack.services["phash"].url
    reply = httpx.post(
        phash + "/phash_get_similar_images_by_image_buffer",
        files={"image": ("clip.mov", clip())},
        data={"k": "1"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()[0]["image_id"] == 110 and reply.json()[0]["distance"] <= 8
    through_gateway = httpx.post(
        stack.url + "/reverse_search", files={"image": ("clip.mov", clip())}, data={"find_duplicate": "1"}
    ).json()
    assert [hit["image_id"] for hit in through_gateway["duplicate"]] == [110]


def test_live_photo_halves_name_each_other_whichever_comes_first(stack: GatewayStack) -> None:
    url = stack.url
    still = media.heic(synthetic_image(40, (320, 240)), media.exif_block(WHEN))
    motion = media.video(
        "mov",
        media.video_frames(40, 45, (320, 240)),
        metadata={"com.apple.quicktime.creationdate": "2024-05-01T10:00:08+0200"},
    )
    added(url, 120, motion, "2024/IMG_0120.MOV")  # the video first
    added(url, 121, still, "2024/IMG_0120.HEIC")
    found = info(url, 120, 121)
    assert (found["120"]["live_photo_of"], found["121"]["live_photo_of"]) == (121, 120)
    # a video keeping only its UTC creation time, two time zones east of the camera's clock
    utc = media.video(
        "mp4", media.video_frames(41, 45, (320, 240)), metadata={"creation_time": "2024-05-01T08:00:09Z"}
    )
    added(url, 122, media.heic(synthetic_image(41, (320, 240)), media.exif_block(WHEN)), "IMG_0122.heic")
    added(url, 123, utc, "IMG_0122.mp4")
    assert info(url, 122)["122"]["live_photo_of"] == 123
    # same name, ten minutes apart: two shots, not one Live Photo; another name: nothing
    added(url, 124, media.heic(synthetic_image(42, (320, 240)), media.exif_block(WHEN)), "IMG_0124.HEIC")
    late = media.video("mov", metadata={"com.apple.quicktime.creationdate": "2024-05-01T10:10:07+0200"})
    added(url, 125, late, "IMG_0124.MOV")
    added(url, 126, still, "IMG_0126.HEIC")
    found = info(url, 124, 125, 126)
    assert [found[k]["live_photo_of"] for k in ("124", "125", "126")] == [None, None, None]
    # deleting one half leaves the other unpaired
    reply = httpx.post(url + "/delete_all_image_features", json={"image_id": 120}, timeout=60)
    assert reply.status_code == 200
    assert info(url, 121)["121"]["live_photo_of"] is None


@cache
def broken() -> dict[str, tuple[bytes, int]]:
    heic = media.heic(synthetic_image(50, (320, 240)))
    video = media.video("mp4")
    return {
        "truncated.heic": (heic[:400], 422),
        "truncated.mp4": (video[: len(video) // 2], 422),
        "truncated.dng": (media.dng(synthetic_image(51, (320, 240)))[:2000], 422),
        "bomb.dng": (media.dng_claiming(60000, 60000), 413),
        "bomb.mkv": (media.video_claiming(40000, 40000), 422),
    }


@pytest.mark.parametrize("name", ["truncated.heic", "truncated.mp4", "truncated.dng", "bomb.dng", "bomb.mkv"])
def test_broken_files_of_each_kind_get_a_clear_4xx(stack: GatewayStack, name: str) -> None:
    data, status = broken()[name]
    reply = add(stack.url, 190, data, name)
    assert reply.status_code == status, reply.text
    detail = str(reply.json()["detail"])
    assert name.split(".")[1].upper() in detail, detail
    assert stack.catalog([190]) == {}  # nothing recorded, nothing left to retry


def test_services_hold_a_still_and_the_catalog_the_uploads_digest(stack: GatewayStack) -> None:
    """For a video (or a HEIC) the services hold the JPEG still the gateway made: a second add of it
    under the id is refused naming its SHA-256. The catalog keeps the upload's own digest, which
    `ambience index` compares with the file, and the still keeps the HEIC's exposure time, which the
    duplicate search compares."""
    still = still_for_services(clip(), DecodeLimits())
    assert still is not None and still[:2] == b"\xff\xd8"
    assert stack.catalog([110])["110"]["digest"] == hashlib.sha256(clip()).hexdigest()
    again = httpx.post(
        stack.services["phash"].url + "/calculate_phash_features",
        files={"image": ("still.jpg", still)},
        data={"image_id": "110"},
        timeout=30,
    )
    assert again.status_code == 409 and hashlib.sha256(still).hexdigest() in again.text
    assert "the same image" in add(stack.url, 110, clip(), "clip.mov").text
    exif = media.exif_block(WHEN, PARIS, orientation=6, subsec="5")
    heic = media.heic(synthetic_image(70, (320, 240)), exif)
    heic_still = still_for_services(heic, DecodeLimits())
    assert heic_still is not None
    found = read_metadata(heic_still, None)
    assert (found["format"], found["width"], found["height"]) == ("JPEG", 240, 320)
    assert found["exposed_at"] == WHEN.replace(microsecond=500_000)
    assert (found["gps_latitude"], found["gps_longitude"]) == pytest.approx(PARIS, abs=1e-4)


def test_ambience_index_takes_phone_and_camera_files_and_says_what_it_skipped(
    stack: GatewayStack, tmp_path: Path
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(media.heic(synthetic_image(60, (320, 240))))
    (folder / "IMG_0002.avif").write_bytes(media.avif(synthetic_image(61, (320, 240))))
    (folder / "DSC_0003.dng").write_bytes(media.dng(synthetic_image(62, (320, 240))))
    (folder / "VID_0004.mp4").write_bytes(media.video("mp4", media.video_frames(63, 30, (320, 240))))
    (folder / "notes.txt").write_text("not a picture")
    (folder / "IMG_0001.xmp").write_text("<x:xmpmeta/>")
    env = {**os.environ, "AMBIENCE_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [sys.executable, "-m", "ambience", "index", str(folder), "--gateway", stack.url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "files: 4" in run.stdout and "added: 4" in run.stdout, run.stdout
    assert "skipped 2 file(s) that are not photos or videos" in run.stderr and ".txt" in run.stderr
