"""faces-dev (labelled face photos, ../shared/faces-dev) and how the people grouping is judged on it.

The folder holds one sub-folder per person (``person01`` ...) of portraits, and ``group/`` with
photos of several people. A portrait's labelled face is its largest (faces come largest first);
other faces found in it are unlabelled. Tests and benches read it through here and skip when it
is absent; its photos are never copied into the project.

Judging a grouping (``judge``): pairwise precision and recall over the labelled photos (a pair of
photos of one person is found when both labelled faces are in one person; a photo whose face was
not found misses its pairs), person01 found in the group photos that hold them, and no group-photo
face in a person whose labelled faces are somebody it cannot be.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ambience_support.photos import REPO

FACES_DEV = Path(os.environ.get("AMBIENCE_TEST_FACES", REPO.parent / "shared" / "faces-dev"))
GROUP = "group"
#: The labelled people each group photo may show (its README: person01 is in two of them; the
#: reflection photo is a person01 portrait with its reflection). Any other face there is a stranger.
GROUP_PEOPLE = {
    "couple.jpg": {"person01"},
    "selfie-many-people.jpg": {"person01"},
    "img11_reflection.jpg": {"person01"},
}
#: Group photos that must show person01's face in person01's person.
PERSON01_IN = ("couple.jpg", "selfie-many-people.jpg")
#: Photos where the same person may appear twice (a face and its reflection).
TWICE_ALLOWED = {"img11_reflection.jpg"}


@dataclass(frozen=True)
class DevPhoto:
    path: Path
    #: The person's folder (``person01``), or ``group``.
    label: str

    @property
    def name(self) -> str:
        return self.path.name


def dev_photos(folder: Path = FACES_DEV) -> list[DevPhoto]:
    """Every photo of faces-dev, labelled ones first (by person, then name), then the group photos."""
    if not folder.is_dir():
        return []
    photos = [
        DevPhoto(path, sub.name)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
        for path in sorted(sub.iterdir())
        if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    ]
    return sorted(photos, key=lambda p: (p.label == GROUP, p.label, p.name))


@dataclass
class Verdict:
    precision: float
    recall: float
    #: Pairs of labelled photos of one person / found in one person / in one person but not one.
    true_pairs: int
    found_pairs: int
    false_pairs: int
    #: Group photos (of PERSON01_IN) where a face is in person01's person.
    person01_found: list[str]
    #: Group faces in a person they cannot be, as "photo#face -> labels of that person".
    wrong_group_faces: list[str]
    #: Labelled photos in which no face was found.
    missed_photos: list[str]

    @property
    def passes(self) -> bool:
        return (
            self.precision >= 0.98
            and self.recall >= 0.90
            and sorted(self.person01_found) == sorted(PERSON01_IN)
            and not self.wrong_group_faces
        )

    def line(self) -> str:
        return (
            f"precision {self.precision:.3f} ({self.false_pairs} false of {self.found_pairs} pairs), "
            f"recall {self.recall:.3f} (of {self.true_pairs}), person01 in {len(self.person01_found)}/"
            f"{len(PERSON01_IN)} group photos, {len(self.wrong_group_faces)} group faces wrong"
        )


def judge(
    photos: list[DevPhoto], face_counts: list[int], person_of: Callable[[int, int], int | None]
) -> Verdict:
    """The grouping's verdict: ``face_counts[i]`` faces were found in ``photos[i]``; ``person_of(i,
    face)`` is the person face ``face`` of photo ``i`` is in (None: unassigned)."""
    labelled = [i for i, p in enumerate(photos) if p.label != GROUP]
    person = {i: person_of(i, 0) if face_counts[i] else None for i in labelled}
    true_pairs = found_pairs = false_pairs = 0
    for i, j in itertools.combinations(labelled, 2):
        same = photos[i].label == photos[j].label
        together = person[i] is not None and person[i] == person[j]
        true_pairs += same
        found_pairs += together
        false_pairs += together and not same
    # Each person's labels: who its labelled faces are.
    labels_of: dict[int, Counter[str]] = {}
    for i in labelled:
        if person[i] is not None:
            labels_of.setdefault(person[i], Counter())[photos[i].label] += 1  # type: ignore[index]
    person01 = {p for p, labels in labels_of.items() if labels.most_common(1)[0][0] == "person01"}
    found01, wrong = [], []
    for i, photo in enumerate(photos):
        if photo.label != GROUP:
            continue
        allowed = GROUP_PEOPLE.get(photo.name, set())
        in01 = 0
        for face in range(face_counts[i]):
            p = person_of(i, face)
            if p is None:
                continue
            labels = set(labels_of.get(p, Counter()))
            if labels - allowed:
                wrong.append(f"{photo.name}#{face} -> {sorted(labels)}")
            in01 += p in person01
        if in01 > 1 and photo.name not in TWICE_ALLOWED:
            wrong.append(f"{photo.name}: {in01} faces in person01's person")
        if in01 and photo.name in PERSON01_IN:
            found01.append(photo.name)
    found_true = found_pairs - false_pairs
    return Verdict(
        precision=found_true / found_pairs if found_pairs else 1.0,
        recall=found_true / true_pairs if true_pairs else 1.0,
        true_pairs=true_pairs,
        found_pairs=found_pairs,
        false_pairs=false_pairs,
        person01_found=found01,
        wrong_group_faces=wrong,
        missed_photos=[f"{photos[i].label}/{photos[i].name}" for i in labelled if not face_counts[i]],
    )
