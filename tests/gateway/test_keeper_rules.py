"""Keeper rules (gateway/duplicates/keeper.py): each rule deciding a case built for it, the reason it
gives, reference folders as clients send paths; and the stack pairing rules (bursts.py)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import pytest

from gateway.duplicates.bursts import frames_apart, one_shot_two_formats, stack_kind
from gateway.duplicates.keeper import (
    DEFAULT_COVER_RULES,
    DEFAULT_KEEPER_RULES,
    KeeperRules,
    folder_parts,
    reference_folder,
)

T = datetime(2024, 5, 1, 10, 0, 0)


def photo(**facts: Any) -> dict[str, Any]:
    return {"kind": "photo", "format": "JPEG", "width": 4000, "height": 3000, "bytes": 3_000_000, **facts}


def choose(rules: list[str], info: dict[int, dict[str, Any]], **kw: Any) -> tuple[int, str | None, str]:
    choice = KeeperRules.of(rules, **kw).choose(info, info)
    return choice.keeper, choice.rule, choice.reason


DEFAULT = {"format_priority": ["RAW", "HEIC", "JPEG"]}


def test_each_rule_decides_its_own_case() -> None:
    # resolution: the full-size copy over a larger file of half the pixels
    assert choose(
        DEFAULT_KEEPER_RULES, {1: photo(width=2000, height=1500, bytes=9_000_000), 2: photo()}, **DEFAULT
    ) == (
        2,
        "resolution",
        "resolution: 4000×3000 over 2000×1500",
    )
    # format: a HEIC beats a larger JPEG of the same pixels; RAW beats both
    heic = {1: photo(bytes=5_000_000), 2: photo(format="HEIC", bytes=1_200_000)}
    assert choose(DEFAULT_KEEPER_RULES, heic, **DEFAULT) == (2, "format", "format: HEIC over JPEG")
    raw = {**heic, 3: photo(format="DNG", bytes=100)}
    assert choose(DEFAULT_KEEPER_RULES, raw, **DEFAULT) == (3, "format", "format: DNG over HEIC")
    # with the format left out, the file size decides
    assert choose(["file_size"], heic) == (1, "file_size", "file size: 4.8 MB over 1.1 MB")
    # a configured priority: PNG first
    png = {1: photo(), 2: photo(format="PNG")}
    assert choose(["format"], png, format_priority=["PNG", "JPEG"])[0] == 2
    # capture time presence, EXIF richness
    assert choose(["capture_time"], {1: photo(), 2: photo(captured_at=T)}) == (
        2,
        "capture_time",
        "capture time: known over unknown",
    )
    rich = photo(captured_at=T, exposed_at=T, gps_latitude=1.0, gps_longitude=2.0)
    assert choose(["exif"], {1: photo(captured_at=T), 2: rich}) == (2, "exif", "EXIF: 3 facts over 1")
    # sharpness: unknown below every measured value
    assert choose(["sharpness"], {1: photo(sharpness=80.0), 2: photo(sharpness=410.0), 3: photo()}) == (
        2,
        "sharpness",
        "sharpness: 410 over 80",
    )
    # oldest / newest by capture time
    old, new = photo(captured_at=T), photo(captured_at=T.replace(year=2025))
    assert choose(["oldest"], {1: new, 2: old})[:2] == (2, "oldest")
    assert choose(["newest"], {1: new, 2: old})[:2] == (1, "newest")
    # nothing tells them apart: the smallest id, said so
    assert choose(DEFAULT_KEEPER_RULES, {5: photo(), 3: photo()}, **DEFAULT) == (
        3,
        None,
        "tie: the smallest image id",
    )


def test_a_reference_folder_beats_a_larger_file() -> None:
    info = {
        1: photo(file_name="Downloads/IMG_1.jpg", bytes=8_000_000),
        2: photo(file_name="Originals/2019/IMG_1.jpg", bytes=2_000_000),
    }
    assert choose(DEFAULT_KEEPER_RULES, info, **DEFAULT) == (1, "file_size", "file size: 7.6 MB over 1.9 MB")
    assert choose(DEFAULT_KEEPER_RULES, info, reference_folders=["Originals"], **DEFAULT) == (
        2,
        "reference",
        "reference folder: Originals",
    )


@pytest.mark.parametrize(
    ("file_name", "folders", "found"),
    [
        ("Originals/a.jpg", ["Originals"], 0),
        ("originals\\2019\\a.jpg", ["Originals"], 0),  # Windows separators, case ignored
        ("/home/me/Pictures/Originals/a.jpg", ["Pictures/Originals"], 0),
        ("Originals/a.jpg", ["Exports", "Originals"], 1),
        ("MyOriginals/a.jpg", ["Originals"], None),
        ("a.jpg", ["Originals"], None),
        ("Originals.jpg", ["Originals"], None),  # a file, not a folder
        (None, ["Originals"], None),
    ],
)
def test_reference_folders_match_folder_components(
    file_name: str | None, folders: list[str], found: int | None
) -> None:
    assert reference_folder(file_name, [folder_parts(f) for f in folders]) == found


def test_the_keeper_is_the_best_in_rule_order_and_the_reason_tells_it_from_the_runner_up() -> None:
    rng = random.Random(3)
    rules = KeeperRules.of(["format", "resolution", "file_size", "sharpness"])
    for _ in range(300):
        info = {
            i: photo(
                format=rng.choice(["JPEG", "HEIC", None]),
                width=rng.choice([2000, 4000, None]),
                bytes=rng.choice([1000, 2000]),
                sharpness=rng.choice([None, 5.0, 9.0]),
            )
            for i in rng.sample(range(1, 50), rng.randint(2, 5))
        }
        ranked = sorted(info, key=lambda m: (*(rules.key(r, info[m]) for r in rules.order), -m), reverse=True)
        choice = rules.choose(info, info)
        assert choice.keeper == ranked[0]
        keeper, runner = info[ranked[0]], info[ranked[1]]
        differing = [r for r in rules.order if rules.key(r, keeper) != rules.key(r, runner)]
        assert choice.rule == (differing[0] if differing else None)


def test_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown keeper rules"):
        KeeperRules.of(["megapixels"])


def test_stacks_pair_one_shot_in_two_formats_and_frames_of_a_burst() -> None:
    raw = photo(format="DNG", file_name="DCIM/IMG_0001.DNG", captured_at=T, exposed_at=T)
    jpeg = photo(file_name="DCIM/IMG_0001.JPG", captured_at=T, exposed_at=T)
    assert one_shot_two_formats(raw, jpeg)
    assert not one_shot_two_formats(raw, {**jpeg, "file_name": "DCIM/IMG_0002.JPG"})
    assert not one_shot_two_formats(raw, {**jpeg, "format": "DNG"})
    assert not one_shot_two_formats(
        raw, {**jpeg, "exposed_at": T.replace(second=5), "captured_at": T.replace(second=5)}
    )
    assert stack_kind([1, 2], {1: raw, 2: jpeg}) == "formats"
    # frames: different exposure instants within the window, at the fraction of a second
    frame = photo(exposed_at=T, exposure_subsecond=True, captured_at=T)
    later = photo(exposed_at=T.replace(microsecond=400_000), exposure_subsecond=True, captured_at=T)
    assert frames_apart(frame, later, 1.0) == pytest.approx(0.4)
    assert frames_apart(frame, frame, 1.0) is None  # one instant: a copy, not a frame
    assert frames_apart(frame, {**later, "exposed_at": T.replace(second=3)}, 1.0) is None
    assert stack_kind([1, 2], {1: frame, 2: later}) == "burst"
    assert DEFAULT_COVER_RULES[:3] == ["reference", "format", "sharpness"]
