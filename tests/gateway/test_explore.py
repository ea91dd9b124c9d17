"""/moments, /map, /duplicate_groups and /image_info over real HTTP: a real gateway, real phash and
color services (in-process, ambience_support.inprocess; color is the vector source: no model to
load), a real catalog."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from ambience_support.explore import SOURCES, add, post, textured
from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.processes import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.color.histogram import histogram, l1
from services.common.postgres.database import PostgresSettings

#: Left out of day-to-day runs (pytest -m "not slow"): moments and the map through a stack.
pytestmark = pytest.mark.slow


def with_exif(
    img: Image.Image,
    taken: str | None = None,
    gps: tuple[float, float] | None = None,
    subsecond: str | None = None,
) -> bytes:
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal
    if subsecond:
        exif.get_ifd(0x8769)[0x9291] = subsecond  # SubsecTimeOriginal
    if gps:
        exif.get_ifd(0x8825).update(
            {
                1: "N" if gps[0] >= 0 else "S",
                2: (abs(gps[0]), 0.0, 0.0),
                3: "E" if gps[1] >= 0 else "W",
                4: (abs(gps[1]), 0.0, 0.0),
            }
        )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path, pg_server, ["phash", "color"], gateway=SOURCES) as st:
        yield st


def test_empty_collection_then_one_image(stack: InProcessStack) -> None:
    url = stack.url
    assert post(url, "/moments", {}).json()["moments"] == []
    assert httpx.get(url + "/map", timeout=60).json()["points"] == []
    assert post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"] == []
    for kind in ("copies", "similar"):
        rebuilt = post(url, "/duplicate_groups/rebuild", {"kind": kind})
        assert rebuilt.status_code == 200 and rebuilt.json()["links"] == 0, rebuilt.text
    assert post(url, "/image_info", {"image_ids": [7]}).json() == {}
    add(url, 7, with_exif(synthetic_image(1), "2024:05:01 10:00:00", (48.5, -3.25)), "beach.jpg")
    moments = post(url, "/moments", {"granularity": 1}).json()["moments"]
    assert moments == [{"moment": 0, "representative": 7, "size": 1, "members": [7]}]
    points = httpx.get(url + "/map", timeout=60).json()["points"]
    assert [(p["image_id"], p["moment"]) for p in points] == [(7, 0)]
    assert post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"] == []
    info = post(url, "/image_info", {"image_ids": [7, 8]}).json()
    assert info == {
        "7": {
            "width": 320,
            "height": 240,
            "bytes": info["7"]["bytes"],
            "file_name": "beach.jpg",
            "captured_at": "2024-05-01T10:00:00",
            "exposed_at": "2024-05-01T10:00:00",
            "exposure_subsecond": False,
            "gps_latitude": 48.5,
            "gps_longitude": -3.25,
            "kind": "photo",
            "format": "JPEG",
            "duration_s": None,
            "live_photo_of": None,
            # the library's place step geocoded the position (gateway/library/placing.py)
            "place": {
                "city": "Guingamp",
                "region": "Brittany",
                "country": "France",
                "country_code": "FR",
                "at_sea": False,
                "name": "Guingamp, Brittany, France",
            },
        }
    }
    assert info["7"]["bytes"] > 1000


def test_copies_grouped_with_a_keeper_and_updated_on_delete(stack: InProcessStack) -> None:
    url = stack.url
    picture = textured(3)
    add(url, 1, encode(picture.resize((200, 150)), quality=80))  # a small copy
    add(url, 2, encode(textured(4)))
    add(url, 3, encode(picture, quality=95))  # the largest: the keeper
    add(url, 4, encode(ImageOps.mirror(picture), quality=90))
    groups = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
    assert len(groups) == 1
    group = groups[0]
    assert group["keeper"] == 3 and group["size"] == 3
    members = group["members"]
    assert next(m["image_id"] for m in members) == 3 and {m["image_id"] for m in members} == {1, 3, 4}
    assert all(m["distance"] >= 0 for m in members) and members[0]["distance"] == 0
    # the map and moments cover every image
    points = httpx.get(url + "/map", params={"granularity": 0.5}, timeout=60).json()["points"]
    assert sorted(p["image_id"] for p in points) == [1, 2, 3, 4]
    assert all(-1 <= p["x"] <= 1 and -1 <= p["y"] <= 1 and p["moment"] is not None for p in points)
    r = httpx.post(url + "/delete_all_image_features", json={"image_id": 3}, timeout=60)
    assert r.status_code == 200
    groups = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
    assert [(g["keeper"], g["size"]) for g in groups] == [(4, 2)]  # same pixels: larger file or lower id
    assert post(url, "/image_info", {"image_ids": [3]}).json() == {}
    rebuilt = post(url, "/duplicate_groups/rebuild", {"kind": "copies"}).json()
    assert rebuilt["source"] == "phash" and rebuilt["links"] >= 0
    after = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
    # the mirror stays: recorded at add time, and found again over the (mirrored) stored hashes
    assert [sorted(m["image_id"] for m in g["members"]) for g in after] == [[1, 4]]


def test_a_recolouring_is_no_copy_at_add_time_nor_after_a_rebuild(stack: InProcessStack) -> None:
    url = stack.url
    picture = textured(5)
    add(url, 1, encode(picture))
    add(url, 2, encode(ImageOps.mirror(picture)))
    # the same luminance (phash hashes grey levels: 0 bits apart), other colours: not a copy
    add(url, 3, encode(ImageOps.grayscale(picture).convert("RGB")))
    add(url, 4, encode(textured(6)))

    def grouped() -> list[list[int]]:
        groups = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
        return sorted(sorted(m["image_id"] for m in g["members"]) for g in groups)

    assert grouped() == [[1, 2]]
    rebuilt = post(url, "/duplicate_groups/rebuild", {"kind": "copies"}).json()
    assert rebuilt["links"] == 1  # the mirror link of the add path is kept; the grey pair is not
    assert grouped() == [[1, 2]]


def test_two_exposures_are_no_copies_however_alike(stack: InProcessStack) -> None:
    url = stack.url
    picture = textured(7)
    add(url, 1, with_exif(picture, "2024:05:01 10:00:00", subsecond="20"))
    # the next frame of a burst: as alike as can be (the same pixels), its own exposure time
    add(url, 2, with_exif(picture, "2024:05:01 10:00:00", subsecond="45"))
    # a half-size copy of frame 1 that kept its exposure time (a copy that dropped the fraction
    # could be of either frame: it links to both, see test_photo_metadata)
    add(url, 3, with_exif(picture.resize((200, 150)), "2024:05:01 10:00:00", subsecond="20"))
    # another photo and its copy without EXIF: no time, no veto
    other = textured(8)
    add(url, 4, with_exif(other, "2024:05:01 11:00:00"))
    add(url, 5, encode(other.resize((200, 150))))
    groups = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
    assert sorted(sorted(m["image_id"] for m in g["members"]) for g in groups) == [[1, 3], [4, 5]]
    # a copy that lost its EXIF (a messenger's) is as near to both frames: it joins one, never both
    add(url, 6, encode(picture.resize((300, 225)), quality=85))
    groups = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
    assert sorted(sorted(m["image_id"] for m in g["members"]) for g in groups) in (
        [[1, 3, 6], [4, 5]],
        [[1, 3], [2, 6], [4, 5]],
    )
    info = post(url, "/image_info", {"image_ids": [1, 3]}).json()
    assert info["1"]["exposed_at"] == "2024-05-01T10:00:00.200000" and info["1"]["exposure_subsecond"]
    assert info["3"]["exposed_at"] == info["1"]["exposed_at"]
    # a rebuild applies the same rule to every pair it finds
    post(url, "/duplicate_groups/rebuild", {"kind": "copies"})
    groups = post(url, "/duplicate_groups", {"kind": "copies"}).json()["groups"]
    assert sorted(sorted(m["image_id"] for m in g["members"]) for g in groups) in (
        [[1, 3, 6], [4, 5]],
        [[1, 3], [2, 6], [4, 5]],
    )

    # and the gallery's duplicate check of an upload: a third frame of the burst has only the copy
    # that lost its EXIF (6), a copy of frame 1 has frame 1 and its copies, one without EXIF all
    def duplicates(data: bytes) -> list[int]:
        query = {"image": ("q.jpg", data)}
        reply = httpx.post(url + "/reverse_search", files=query, data={"find_duplicate": "1"}, timeout=60)
        assert reply.status_code == 200, reply.text
        return sorted(h["image_id"] for h in reply.json().get("duplicate", []))

    assert duplicates(with_exif(picture, "2024:05:01 10:00:00", subsecond="70")) == [6]
    assert duplicates(with_exif(picture, "2024:05:01 10:00:00", subsecond="20")) == [1, 3, 6]
    assert duplicates(encode(picture)) == [1, 2, 3, 6]


def test_near_shots_are_similar_within_the_distance_and_the_time_gap(
    tmp_path: Path, pg_server: TestServer
) -> None:
    picture = textured(11)
    near = picture.copy()  # the next shot: something small moved
    near.paste(picture.crop((40, 40, 100, 100)), (300, 200))
    uploads = {
        1: with_exif(picture, "2024:05:01 10:00:00"),
        2: with_exif(near, "2024:05:01 10:00:04"),
        3: with_exif(near, "2024:05:01 12:00:00"),  # the same again, two hours later: no burst
        4: with_exif(textured(12), "2024:05:01 10:00:02"),
    }
    colours = {i: histogram(Image.open(io.BytesIO(data)).convert("RGB")) for i, data in uploads.items()}
    close, far = l1(colours[1], colours[2]), l1(colours[1], colours[4])
    assert far > 10 * close
    settings = {**SOURCES, "similar_distance": (close * far) ** 0.5}
    with inprocess_stack(tmp_path, pg_server, ["phash", "color"], gateway=settings) as stack:
        for image_id, data in uploads.items():
            add(stack.url, image_id, data)

        def grouped(kind: str) -> list[list[int]]:
            groups = post(stack.url, "/duplicate_groups", {"kind": kind}).json()["groups"]
            return sorted(sorted(m["image_id"] for m in g["members"]) for g in groups)

        assert grouped("similar") == [[1, 2]]
        # two exposures: never copies, however alike (the shots 2 and 3 are the same picture)
        assert grouped("copies") == []
        rebuilt = post(stack.url, "/duplicate_groups/rebuild", {"kind": "similar"}).json()
        assert rebuilt["source"] == "color"
        assert grouped("similar") == [[1, 2]]


def test_moments_never_span_a_capture_time_gap(stack: InProcessStack) -> None:
    url = stack.url
    picture = synthetic_image(5)
    add(url, 1, with_exif(picture, "2024:05:01 10:00:00"))
    add(url, 2, with_exif(picture, "2024:05:03 10:00:00"))  # the same picture two days later
    add(url, 3, with_exif(picture, "2024:05:01 10:05:00"))
    one = post(url, "/moments", {"granularity": 0.34, "max_gap_s": 0}).json()["moments"]
    assert next(m["members"] for m in one if 1 in m["members"]) == sorted(
        [1, 2, 3], key=lambda i: one[0]["members"].index(i)
    )
    split = post(url, "/moments", {"granularity": 0.34}).json()["moments"]
    assert sorted(sorted(m["members"]) for m in split) == [[1, 3], [2]]
    assert all(m["representative"] == m["members"][0] and m["size"] == len(m["members"]) for m in split)


def test_density_moments_return_noise(stack: InProcessStack) -> None:
    url = stack.url
    for i in range(3):
        add(url, i, encode(synthetic_image(20 + i)))
    reply = post(url, "/moments", {"method": "density", "eps": 0.0001, "min_samples": 2}).json()
    assert reply["moments"] == [] and sorted(reply["noise"]) == [0, 1, 2]


def test_bad_parameters_are_422(stack: InProcessStack) -> None:
    url = stack.url
    for body in ({"granularity": 0}, {"granularity": 1.5}, {"method": "spectral"}, {"source": "ocr"}):
        r = post(url, "/moments", body)
        assert r.status_code == 422, (body, r.text)
    assert "source must be one of" in post(url, "/moments", {"source": "ocr"}).text
    assert post(url, "/duplicate_groups", {"kind": "twins"}).status_code == 422
    assert post(url, "/duplicate_groups/rebuild", {"kind": "twins"}).status_code == 422
    assert httpx.get(url + "/map", params={"granularity": 0}, timeout=30).status_code == 422
    for body in ({"image_ids": ["seven"]}, {"image_ids": list(range(10_001))}, {}):
        r = post(url, "/image_info", body)
        assert r.status_code == 422, (body, r.text)


def test_an_unavailable_source_is_a_503_naming_it(tmp_path: Path, pg_server: TestServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway",
        runner_state_dir=tmp_path / "run",
        services=["color"],
        service_urls={"color": dead},
        **SOURCES,
    )
    app = create_app(settings, PostgresSettings(dsn=pg_server.new_database("gateway")))
    with TestClient(app) as gateway:
        for reply in (gateway.post("/moments", json={}), gateway.get("/map")):
            assert reply.status_code == 503
            assert "color" in reply.json()["detail"] and "analysis" in reply.json()["detail"]
        r = gateway.post("/moments", json={"source": "global_features"})
        assert r.status_code == 503 and "global_features is not enabled" in r.json()["detail"]
        r = gateway.post("/duplicate_groups/rebuild", json={"kind": "copies"})
        assert r.status_code == 503 and "phash" in r.json()["detail"]
