"""The copies groups' quality bar on real photographs, over real HTTP: a gateway with its default
duplicate settings and the phash, color and local_features (RootSIFT, no weights) services as
processes. Photos plus 4 copies each (JPEG 30, half size, 80% crop, mirror): every copy must land in
its source's group, and no group may hold two different photos.

A fixed subset of ../shared/photos that holds the hard cases (the whole set is in
bench/duplicate_groups_bench.py): the recoloured shots Viktor_Forgacs_02/03/04, 16-78 phash bits
from each other and from Viktor_Forgacs (which Victor_Forgacs repeats byte for byte: one photo under
two names), all verified by local features with dozens of inliers; and a day and a night edit of one
shot (Ashim_DSilva), which only local features link; and two smooth wallpapers (Glow,
Mesh_Gradient) whose crops local features cannot verify and the thumbnail alignment does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.copy_groups import (
    DAY_AND_NIGHT,
    RECOLOURED_SERIES,
    SMOOTH,
    add_through_gateway,
    copy_uploads,
    groups_of,
    judge,
)
from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer

HARD_CASES = (*RECOLOURED_SERIES, *DAY_AND_NIGHT, *SMOOTH)


@pytest.fixture
def stack(tmp_path: Path, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path, pg_server, ["phash", "color", "local_features"]) as st:
        yield st


def test_every_copy_in_its_sources_group_and_no_two_photos_together(
    photos: list[Path], stack: InProcessStack
) -> None:
    by_name = {p.name: p for p in photos}
    missing = [name for name in HARD_CASES if name not in by_name]
    assert not missing, f"the shared photos lack {missing}"
    with httpx.Client(timeout=120) as client:
        uploads, _ = add_through_gateway(client, stack.url, copy_uploads([by_name[n] for n in HARD_CASES]))
        verdict = judge(uploads, groups_of(client, stack.url))
    assert verdict.missed == []
    assert verdict.mixed == []
    # the one photo under two names is one group; each recolouring is a group of its own
    assert verdict.groups == 8
