"""The duplicate groups' quality bar, shared by its test and its bench: photos plus 4 edited copies
of each (:func:`ambience_support.transforms.variants`: JPEG quality 30, half size, a crop keeping 80%
of the area, mirrored) added through a gateway; then every copy must be in its source's group and no
group may hold two different photos.

Byte-identical files under two names (Victor_Forgacs.jpg, Viktor_Forgacs.jpg) are one photo;
recoloured versions of one shot (Viktor_Forgacs_02..04) are different photos.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ambience_support.photos import load_rgb
from ambience_support.stacks import wait_complete
from ambience_support.transforms import VARIANTS, source_bytes, variants

SOURCE = "source"
#: One shot under two names (byte-identical) and three recolourings of it: the hard case of the
#: shared photos, 16-78 phash bits apart, dozens of local-feature inliers from each other.
RECOLOURED_SERIES = (
    "Victor_Forgacs.jpg",
    "Viktor_Forgacs.jpg",
    "Viktor_Forgacs_02.jpg",
    "Viktor_Forgacs_03.jpg",
    "Viktor_Forgacs_04.jpg",
)
#: A day and a night edit of one shot: 156 phash bits apart but 60-65 local-feature inliers.
DAY_AND_NIGHT = ("Ashim_DSilva.jpg", "Ashim_DSilva_Night.jpg")
#: Smooth wallpapers: their 80% crops keep 4-6 local-feature inliers, no more than unrelated photos;
#: only the thumbnail alignment (gateway/duplicates/alignment.py) verifies them.
SMOOTH = ("Glow.jpg", "Mesh_Gradient_by_Jazil_T_S.jpg")


@dataclass(frozen=True)
class Upload:
    image_id: int
    #: The photo's file name, and the SHA-256 of its file (what makes two names one photo).
    photo: str
    content: str
    #: "source" or one of :data:`~ambience_support.transforms.VARIANTS`.
    kind: str
    data: bytes


def copy_uploads(paths: list[Path], first_id: int = 0) -> Iterator[Upload]:
    """Each photo (JPEG quality 92), then its 4 copies, on consecutive ids. The crop's place is
    seeded by the file name, so a photo gets the same crop in every subset."""
    image_id = first_id
    for path in paths:
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        img = load_rgb(path)
        uploads = {SOURCE: source_bytes(img), **variants(img, seed=zlib.crc32(path.name.encode()))}
        for kind, data in uploads.items():
            yield Upload(image_id, path.name, content, kind, data)
            image_id += 1


def add_through_gateway(
    client: httpx.Client, url: str, uploads: Iterator[Upload], progress: Callable[[int], None] | None = None
) -> tuple[list[Upload], list[float]]:
    """Add every upload through ``url``'s /calculate_all_image_features, one at a time, then wait
    until the gateway has linked them all (the steps that follow the adds). The uploads, and each
    add's wall seconds."""
    added, seconds = [], []
    for n, upload in enumerate(uploads):
        started = time.perf_counter()
        reply = client.post(
            url + "/calculate_all_image_features",
            files={"image": (f"{upload.photo}.{upload.kind}.jpg", upload.data)},
            data={"image_id": str(upload.image_id)},
        )
        seconds.append(time.perf_counter() - started)
        reply.raise_for_status()
        failed = [e for e in reply.json() if e["status"] not in ("ok", "queued")]
        if failed:
            raise RuntimeError(f"adding {upload.photo} ({upload.kind}): {failed}")
        added.append(upload)
        if progress is not None:
            progress(n + 1)
    wait_complete(url, [u.image_id for u in added], timeout=600)
    return added, seconds


@dataclass
class Verdict:
    photos: int
    #: copy kind -> copies in the same group as their source
    in_source_group: dict[str, int] = field(default_factory=dict)
    #: the groups holding more than one photo, each as its photos' names (sorted)
    mixed: list[list[str]] = field(default_factory=list)
    groups: int = 0
    #: copies not in their source's group, as "photo (kind)"
    missed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mixed and all(n == self.photos for n in self.in_source_group.values())


def judge(uploads: list[Upload], groups: list[list[int]]) -> Verdict:
    """The bar over ``groups`` (image ids per group; images in no group stand alone)."""
    group_of = {image_id: n for n, members in enumerate(groups) for image_id in members}
    by_id = {u.image_id: u for u in uploads}
    source_of = {u.photo: u.image_id for u in uploads if u.kind == SOURCE}
    verdict = Verdict(photos=len(source_of), in_source_group=dict.fromkeys(VARIANTS, 0), groups=len(groups))
    for upload in uploads:
        if upload.kind == SOURCE:
            continue
        source = source_of[upload.photo]
        if upload.image_id in group_of and group_of[upload.image_id] == group_of.get(source):
            verdict.in_source_group[upload.kind] += 1
        else:
            verdict.missed.append(f"{upload.photo} ({upload.kind})")
    for members in groups:
        contents = {by_id[m].content for m in members if m in by_id}
        if len(contents) > 1:
            verdict.mixed.append(sorted({by_id[m].photo for m in members if m in by_id}))
    verdict.mixed.sort()
    return verdict


def groups_of(client: httpx.Client, url: str) -> list[list[int]]:
    """The gateway's copies groups, as image ids."""
    reply = client.post(url + "/duplicate_groups", json={"kind": "copies"})
    reply.raise_for_status()
    return [[m["image_id"] for m in g["members"]] for g in reply.json()["groups"]]
