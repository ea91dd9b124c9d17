"""The quality bars of the people feature on ../shared/faces-dev (skipped when it is absent): every
photo through the faces service's own detection and descriptors in-process (default settings, the
real dlib weights), then the people grouping with its default settings. Pairwise precision >= 0.98
and recall >= 0.90 over the labelled photos, person01 found in both group photos that hold them,
and no group-photo face in a person it cannot be (ambience_support/faces_dev.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ambience_support.faces_dev import FACES_DEV, DevPhoto, Verdict, dev_photos, judge
from gateway.people.clustering import PeopleGrouping
from gateway.people.faces import GroupingSettings

pytest.importorskip("dlib")

from services.faces.extraction import ImageFaces
from services.faces.service import FacesFeature
from services.faces.settings import FacesSettings

#: Left out of day-to-day runs (pytest -m "not slow"): faces-dev through the real detector.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faces_dev(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[DevPhoto], list[ImageFaces]]:
    photos = dev_photos()
    if not photos:
        pytest.skip(f"faces-dev not found at {FACES_DEV}")
    feature = FacesFeature(FacesSettings(data_dir=Path(tmp_path_factory.mktemp("faces"))))
    feature.load()
    return photos, [feature.faces_of(photo.path.read_bytes()) for photo in photos]


def grouped(
    photos: list[DevPhoto], faces: list[ImageFaces], order: list[int]
) -> tuple[PeopleGrouping, Verdict]:
    grouping = PeopleGrouping(GroupingSettings())
    for i in order:
        if len(faces[i]):
            grouping.add([(i, face) for face in range(len(faces[i]))], faces[i].descriptors)
    counts = [len(f) for f in faces]
    return grouping, judge(photos, counts, lambda i, face: grouping.person_of((i, face)))


def test_every_labelled_photo_has_its_face_found(faces_dev: tuple[list[DevPhoto], list[ImageFaces]]) -> None:
    photos, faces = faces_dev
    missed = [
        f"{p.label}/{p.name}" for p, f in zip(photos, faces, strict=True) if p.label != "group" and not len(f)
    ]
    assert not missed
    assert sum(1 for p in photos if p.label != "group") == 61


def test_people_meet_the_bars_in_any_order_and_after_regrouping(
    faces_dev: tuple[list[DevPhoto], list[ImageFaces]],
) -> None:
    photos, faces = faces_dev
    in_file_order = list(range(len(photos)))
    shuffled = in_file_order[:]
    random.Random(7).shuffle(shuffled)
    for order in (in_file_order, shuffled):
        grouping, verdict = grouped(photos, faces, order)
        assert verdict.passes, verdict.line()
        assert verdict.precision >= 0.98 and verdict.recall >= 0.90
        assert sorted(verdict.person01_found) == ["couple.jpg", "selfie-many-people.jpg"]
        assert verdict.wrong_group_faces == []
        grouping.regroup()
        counts = [len(f) for f in faces]
        after = judge(photos, counts, lambda i, face, g=grouping: g.person_of((i, face)))
        assert after.passes, after.line()


def test_the_judge_catches_a_bad_grouping(faces_dev: tuple[list[DevPhoto], list[ImageFaces]]) -> None:
    """Everybody in one person: precision collapses and group faces land in the wrong person."""
    photos, faces = faces_dev
    verdict = judge(photos, [len(f) for f in faces], lambda i, face: 1)
    assert not verdict.passes and verdict.precision < 0.2 and verdict.wrong_group_faces
    nobody = judge(photos, [len(f) for f in faces], lambda i, face: None)
    assert not nobody.passes and nobody.recall == 0
