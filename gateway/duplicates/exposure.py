"""The exposure rule: two shots are never copies of each other.

A burst's frames can be as alike as a re-encode (phash bits, local features, aligned pixels), but
the camera stamped each with its own exposure time (DateTimeOriginal and its fraction of a second,
read by gateway/photo_metadata.py). A copy keeps its original's; one that lost its EXIF has none and
joins only the frame it is nearest to. Plain functions over the recorded times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.duplicates.groups import Link

Exposure = tuple[datetime, bool]


def different_exposures(a: Exposure | None, b: Exposure | None) -> bool:
    """True when both exposure times are known and differ: at sub-second precision when both have
    it, else to the second (a copy may keep the second and drop the fraction)."""
    if a is None or b is None:
        return False
    if a[1] and b[1]:
        return a[0] != b[0]
    return a[0].replace(microsecond=0) != b[0].replace(microsecond=0)


def exposure_consistent(
    links: list[Link], exposure: dict[int, Exposure | None], pinned: list[Link] | None = None
) -> list[Link]:
    """Those of ``links`` that keep every group they make to one exposure time: the ``pinned``
    links (already recorded) join their images first, then ``links`` nearest first, each left out
    when the two groups it would join hold different exposure times. So two frames of a burst are
    never grouped, neither directly nor through a copy that lost its EXIF (which joins the frame it
    is nearest to). ``exposure``: per image id, None where unknown."""
    parent: dict[int, int] = {}
    known: dict[int, Exposure | None] = {}

    def find(image_id: int) -> int:
        if image_id not in parent:
            parent[image_id], known[image_id] = image_id, exposure.get(image_id)
        root = image_id
        while parent[root] != root:
            root = parent[root]
        while parent[image_id] != root:
            parent[image_id], image_id = root, parent[image_id]
        return root

    def join(a: int, b: int) -> bool:
        ra, rb = find(a), find(b)
        if ra == rb:
            return True
        if different_exposures(known[ra], known[rb]):
            return False
        parent[rb] = ra
        # keep the more precise of two agreeing times
        times = [t for t in (known[ra], known[rb]) if t is not None]
        known[ra] = max(times, key=lambda t: t[1]) if times else None
        return True

    for a, b, _ in pinned or []:
        join(a, b)
    kept = {(a, b) for a, b, _ in sorted(links, key=lambda link: link[2]) if join(a, b)}
    return [link for link in links if (link[0], link[1]) in kept]


def recorded_exposure(info: dict[str, Any]) -> Exposure | None:
    """The exposure time as :func:`exposure_time` gives it, from what :func:`read_metadata`
    returned or the catalog recorded (``exposed_at``, ``exposure_subsecond``)."""
    when = info.get("exposed_at")
    return None if when is None else (when, bool(info.get("exposure_subsecond")))
