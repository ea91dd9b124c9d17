"""Cleaning up duplicates over real HTTP: two gateway processes on one catalog (replicas), real phash
and color services, a real PostgreSQL. Decisions that stick (through a rebuild, a re-add and the
other replica), keeper rules with their reasons, bursts and RAW+JPEG pairs as stacks, resolve with a
service down (finished by the retry worker), paging while adds arrive."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageFilter

from ambience_support.images import encode
from ambience_support.media import dng, exif_block, heic, scene
from ambience_support.pg import TestServer
from ambience_support.processes import ServiceProcess
from ambience_support.stacks import GatewayStack, start_stack, wait_complete

#: Left out of day-to-day runs (pytest -m "not slow"): the duplicates workflow through a stack.
pytestmark = pytest.mark.slow

ENV = {
    # copies within 120 phash bits (scenes of blocks: other scenes 270+ bits away); no near shots
    # (color is the only vector source here: the kinds under test are copies and bursts)
    "AMBIENCE_GATEWAY_DUPLICATE_DISTANCE": "120",
    "AMBIENCE_GATEWAY_EXPLORE_SOURCES": json.dumps(["color"]),
    "AMBIENCE_GATEWAY_SIMILAR_DISTANCE": "0",
}
T = datetime(2024, 5, 1, 10, 0, 0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[GatewayStack]:
    st = start_stack(tmp_path_factory.mktemp("workflow"), pg_server, ["phash", "color"], ENV)
    yield st
    st.stop()


@pytest.fixture(scope="module")
def replica(stack: GatewayStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway on the same catalog, whose default keeper rules prefer ``Originals``."""
    tmp = tmp_path_factory.mktemp("replica")
    env = {
        **stack.env,
        "AMBIENCE_GATEWAY_RUNNER_STATE_DIR": str(tmp / "run"),
        "AMBIENCE_GATEWAY_KEEPER_REFERENCE_FOLDERS": json.dumps(["Originals"]),
    }
    process = ServiceProcess("gateway", "AMBIENCE_GATEWAY_", tmp / "gateway", extra_env=env).start()
    yield process.url
    process.stop()


def picture(seed: int) -> Image.Image:
    return scene(seed, (400, 300))


def add(url: str, image_id: int, data: bytes, name: str) -> None:
    r = httpx.post(
        url + "/calculate_all_image_features",
        files={"image": (name, data)},
        data={"image_id": str(image_id)},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    wait_complete(url, [image_id])


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)


def groups(url: str, kind: str = "copies", **body: Any) -> dict[str, Any]:
    r = post(url, "/duplicate_groups", {"kind": kind, **body})
    assert r.status_code == 200, r.text
    return r.json()


def group_of(reply: dict[str, Any], image_id: int) -> dict[str, Any] | None:
    return next((g for g in reply["groups"] if image_id in [m["image_id"] for m in g["members"]]), None)


def members(group: dict[str, Any] | None) -> list[int]:
    return sorted(m["image_id"] for m in group["members"]) if group else []


def decide(url: str, ids: list[int], decision: str, **body: Any) -> httpx.Response:
    return post(url, "/duplicate_groups/decisions", {"image_ids": ids, "decision": decision, **body})


def test_a_not_duplicates_decision_survives_a_rebuild_a_re_add_and_the_other_replica(
    stack: GatewayStack, replica: str
) -> None:
    a, b = stack.url, replica
    source = picture(1)
    small = encode(source.resize((300, 225)), quality=80)
    add(a, 101, encode(source, quality=95), "one.jpg")
    add(b, 102, small, "one-small.jpg")
    assert members(group_of(groups(a), 101)) == members(group_of(groups(b), 101)) == [101, 102]

    made = decide(a, [101, 102], "not_duplicates")
    assert made.status_code == 200, made.text
    decision = made.json()
    assert decision["kind"] is None and decision["image_ids"] == [101, 102]
    assert decision in httpx.get(b + "/duplicate_groups/decisions", timeout=10).json()["decisions"]
    assert decide(b, [102, 101], "not_duplicates").json()["id"] == decision["id"]  # recorded once
    for url in (a, b):
        assert group_of(groups(url), 101) is None and group_of(groups(url), 102) is None

    rebuilt = post(b, "/duplicate_groups/rebuild", {"kind": "copies"})
    assert rebuilt.status_code == 200 and rebuilt.json()["links"] >= 1, rebuilt.text
    assert group_of(groups(a), 101) is None

    r = post(a, "/delete_all_image_features", {"image_id": 102})
    assert r.status_code == 200, r.text
    add(b, 102, small, "one-small.jpg")  # the same image again
    assert group_of(groups(a), 102) is None and group_of(groups(b), 101) is None

    # a third copy links to both; it joins one of them, never both
    add(a, 103, encode(source.resize((360, 270)), quality=70), "one-third.jpg")
    third = members(group_of(groups(b), 103))
    assert third in ([101, 103], [102, 103])

    undone = post(b, "/duplicate_groups/decisions/remove", {"id": decision["id"]})
    assert undone.status_code == 200 and undone.json()["removed"]["id"] == decision["id"]
    assert members(group_of(groups(a), 101)) == [101, 102, 103]
    assert post(b, "/duplicate_groups/decisions/remove", {"id": decision["id"]}).status_code == 404

    # duplicates: two different pictures made one group, through a rebuild too
    add(a, 104, encode(picture(2)), "two.jpg")
    add(a, 105, encode(picture(3)), "three.jpg")
    assert group_of(groups(a), 104) is None
    together = decide(b, [104, 105], "duplicates", kind="copies").json()
    assert members(group_of(groups(a), 104)) == [104, 105]
    assert post(a, "/duplicate_groups/rebuild", {"kind": "copies"}).status_code == 200
    assert members(group_of(groups(b), 105)) == [104, 105]
    clash = decide(a, [105, 104], "not_duplicates")
    assert clash.status_code == 409 and clash.json()["detail"]["decisions"] == [together["id"]]
    assert decide(a, [104], "duplicates").status_code == 422
    gone = httpx.delete(f"{a}/duplicate_groups/decisions/{together['id']}", timeout=10)
    assert gone.status_code == 200, gone.text
    assert group_of(groups(b), 104) is None


def test_keeper_rules_say_why_a_heic_and_a_reference_folder_win(stack: GatewayStack, replica: str) -> None:
    a, b = stack.url, replica
    source = picture(20)
    as_heic, as_jpeg = heic(source, quality=60), encode(source, quality=98)
    assert len(as_jpeg) > len(as_heic)
    add(a, 201, as_heic, "phone/IMG_201.HEIC")
    add(a, 202, as_jpeg, "export/IMG_201 export.jpg")
    group = group_of(groups(a), 201)
    assert group is not None and members(group) == [201, 202]
    assert (group["keeper"], group["keeper_rule"], group["keeper_reason"]) == (
        201,
        "format",
        "format: HEIC over JPEG",
    )
    assert group["bytes_freed"] == len(as_jpeg)
    by_size = group_of(groups(a, keeper_rules=["file_size"]), 201)
    assert by_size is not None and (by_size["keeper"], by_size["keeper_rule"]) == (202, "file_size")

    # a reference folder beats a larger file: per request on A, by B's setting
    other = picture(21)
    original, larger = encode(other, quality=70), encode(other, quality=97)
    assert len(larger) > len(original)
    add(a, 203, original, "Originals/2019/IMG_203.jpg")
    add(a, 204, larger, "Downloads/IMG_203 (1).jpg")
    plain = group_of(groups(a), 203)
    assert plain is not None and (plain["keeper"], plain["keeper_rule"]) == (204, "file_size")
    by_folder = group_of(groups(a, reference_folders=["Originals"]), 203)
    assert by_folder is not None
    assert (by_folder["keeper"], by_folder["keeper_reason"]) == (203, "reference folder: Originals")
    assert by_folder["members"][0]["file_name"] == "Originals/2019/IMG_203.jpg"
    on_b = group_of(groups(b), 203)
    assert on_b is not None and (on_b["keeper"], on_b["keeper_rule"]) == (203, "reference")


def burst_frame(base: Image.Image, shift: int, blur: float, subsecond: str) -> bytes:
    frame = ImageChops.offset(base, shift, 0)
    if blur:
        frame = frame.filter(ImageFilter.GaussianBlur(blur))
    return encode(frame, quality=92, exif=exif_block(T, subsec=subsecond).tobytes())


def test_a_burst_is_a_stack_not_copies_and_its_cover_is_the_sharpest_frame(stack: GatewayStack) -> None:
    a = stack.url
    base = picture(30)
    for image_id, shift, blur, subsecond in ((301, 0, 2.0, "10"), (302, 3, 0.0, "40"), (303, 6, 2.5, "70")):
        add(a, image_id, burst_frame(base, shift, blur, subsecond), f"burst/IMG_{image_id}.jpg")
    copies = groups(a)
    assert all(len(set(members(g)) & {301, 302, 303}) <= 1 for g in copies["groups"])
    stack_reply = groups(a, "bursts")
    burst = group_of(stack_reply, 301)
    assert burst is not None and members(burst) == [301, 302, 303]
    assert burst["stack"] == "burst" and burst["cover"] == burst["keeper"] == 302
    assert burst["keeper_rule"] == "sharpness" and burst["keeper_reason"].startswith("sharpness: ")
    # distances are seconds from the cover
    assert {m["image_id"]: m["distance"] for m in burst["members"]} == {302: 0.0, 301: 0.3, 303: 0.3}


def test_raw_and_jpeg_of_one_shot_are_a_stack_with_the_raw_as_cover(stack: GatewayStack) -> None:
    a = stack.url
    shot = picture(40)
    when = datetime(2024, 6, 2, 8, 30, 0)
    add(a, 401, dng(shot, when=when), "DCIM/IMG_0401.DNG")
    add(a, 402, encode(shot, quality=90, exif=exif_block(when).tobytes()), "DCIM/IMG_0401.JPG")
    add(a, 403, encode(picture(41), quality=90, exif=exif_block(when).tobytes()), "DCIM/IMG_0403.JPG")
    pair = group_of(groups(a, "bursts"), 401)
    assert pair is not None and members(pair) == [401, 402]
    assert pair["stack"] == "formats" and pair["cover"] == 401
    assert pair["keeper_reason"] == "format: DNG over JPEG"
    rebuilt = post(a, "/duplicate_groups/rebuild", {"kind": "bursts"})
    assert rebuilt.status_code == 200, rebuilt.text
    assert members(group_of(groups(a, "bursts"), 402)) == [401, 402]


def test_pages_keep_their_order_while_adds_arrive(stack: GatewayStack, replica: str) -> None:
    a = stack.url
    for n in range(3):
        source = picture(60 + n)
        add(a, 601 + 2 * n, encode(source, quality=95), f"p/{n}.jpg")
        add(a, 602 + 2 * n, encode(source.resize((200, 150)), quality=75), f"p/{n}-small.jpg")
    everything = groups(a, page_size=None)
    total = everything["totals"]
    assert total["groups"] == len(everything["groups"]) >= 4
    assert total["images"] == sum(g["size"] for g in everything["groups"])
    assert total["bytes_freed"] == sum(g["bytes_freed"] for g in everything["groups"])
    keys = [(-g["size"], g["id"]) for g in everything["groups"]]
    assert keys == sorted(keys)
    # numbered pages of one generation are the whole list, in order, on either replica
    first = groups(a, page=1, page_size=2)
    assert first["pages"] == -(-total["groups"] // 2) and first["generation"] == everything["generation"]
    pages = [groups(a, page=n, page_size=2)["groups"] for n in range(1, first["pages"] + 1)]
    assert [g for page in pages for g in page] == everything["groups"]
    # (the replica prefers Originals: its keepers may differ, not its groups)
    assert [g["id"] for g in groups(replica, page=2, page_size=2)["groups"]] == [g["id"] for g in pages[1]]

    # a cursor walk while new groups form: none listed twice, none of those before it missed
    seen: list[int] = []
    reply = first
    arriving = iter([(701, 702, 70), (703, 704, 71)])
    while True:
        seen += [g["id"] for g in reply["groups"]]
        if reply["next"] is None:
            break
        found = next(arriving, None)
        if found is not None:  # a new group of two, listed by size among the others
            source = picture(found[2])
            add(a, found[0], encode(source, quality=95), "q.jpg")
            add(a, found[1], encode(source.resize((200, 150)), quality=75), "q-small.jpg")
        reply = groups(a, page_size=2, after=reply["next"])
        assert reply["page"] is None
    assert len(seen) == len(set(seen))
    assert {g["id"] for g in everything["groups"]} <= set(seen)
    assert post(a, "/duplicate_groups", {"after": "not a cursor"}).status_code == 422
    assert post(a, "/duplicate_groups", {"keeper_rules": ["megapixels"]}).status_code == 422
    by_space = groups(a, order="space")["groups"]
    assert [g["bytes_freed"] for g in by_space] == sorted((g["bytes_freed"] for g in by_space), reverse=True)


def stored(stack: GatewayStack, service: str, image_id: int) -> bool:
    reply = httpx.post(
        f"{stack.services[service].url}/{service}_get_similar_images_by_id",
        json={"image_id": image_id, "k": 1},
        timeout=10,
    )
    assert reply.status_code in (200, 404), reply.text
    return reply.status_code == 200


def test_resolve_deletes_everywhere_with_a_service_down_and_the_group_stays_resolved(
    stack: GatewayStack,
) -> None:
    a = stack.url
    source = picture(50)
    add(a, 501, encode(source, quality=95), "r/keeper.jpg")
    # the copy kept the EXIF the keeper lost: the keeper should inherit its time and place
    copy = encode(source.resize((200, 150)), quality=75, exif=exif_block(T, gps=(48.5, -3.25)).tobytes())
    add(a, 502, copy, "r/copy.jpg")
    group = group_of(groups(a), 501)
    assert group is not None and members(group) == [501, 502] and group["keeper"] == 501

    color = stack.services["color"]
    color.stop()
    try:
        r = post(a, "/duplicate_groups/resolve", {"kind": "copies", "keep": [501], "remove": [502]})
    finally:
        color.start()
    assert r.status_code == 200, r.text
    resolved = r.json()
    (removed,) = resolved["removed"]
    assert removed["image_id"] == 502 and removed["status"] == "pending"
    by_service = {s["service"]: s["status"] for s in removed["services"]}
    assert by_service == {"phash": "ok", "color": "unavailable"}
    inherit = resolved["inherit"]
    assert inherit["captured_at"] == T.isoformat() and inherit["captured_at_from"] == 502
    assert inherit["gps"] == {"latitude": 48.5, "longitude": -3.25} and inherit["file_names"] == [
        "r/copy.jpg"
    ]
    assert group_of(groups(a), 501) is None  # gone from the groups at once
    listed = httpx.get(a + "/duplicate_groups/decisions", params={"decision": "resolved"}, timeout=10).json()
    assert listed["decisions"][0]["id"] == resolved["resolution"]
    assert listed["decisions"][0]["detail"]["removed"] == [502]

    deadline = time.monotonic() + 60  # the retry worker finishes color's part once it is back
    while "502" in httpx.post(a + "/catalog_status", json={"image_ids": [502]}, timeout=10).json():
        assert time.monotonic() < deadline, "the delete was not finished"
        time.sleep(0.2)
    assert not stored(stack, "color", 502) and not stored(stack, "phash", 502)

    # a new copy of the keeper is a new duplicate: a new group with the keeper
    add(a, 503, encode(source.resize((240, 180)), quality=70), "r/again.jpg")
    assert members(group_of(groups(a), 503)) == [501, 503]
