"""What the gateway remembers of an upload: kind (photo or video), format, size in pixels and bytes,
file name, capture time (and the exact exposure time, which tells two shots apart), GPS position and
a video's duration. Read by the kit's one metadata reader (services/common/media/metadata.py: JPEG,
PNG, WebP, HEIC, AVIF, camera RAW and video alike) without decoding pixels; a file it cannot read
still gets its byte count and name (the services decide whether it is an image)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.media.metadata import read_media_metadata


def different_exposures(a: tuple[datetime, bool] | None, b: tuple[datetime, bool] | None) -> bool:
    """True when both exposure times are known and differ: at sub-second precision when both have
    it, else to the second (a copy may keep the second and drop the fraction)."""
    if a is None or b is None:
        return False
    if a[1] and b[1]:
        return a[0] != b[0]
    return a[0].replace(microsecond=0) != b[0].replace(microsecond=0)


Link = tuple[int, int, float]


def exposure_consistent(
    links: list[Link], exposure: dict[int, tuple[datetime, bool] | None], pinned: list[Link] | None = None
) -> list[Link]:
    """Those of ``links`` that keep every group they make to one exposure time: the ``pinned``
    links (already recorded) join their images first, then ``links`` nearest first, each left out
    when the two groups it would join hold different exposure times. So two frames of a burst are
    never grouped, neither directly nor through a copy that lost its EXIF (which joins the frame it
    is nearest to). ``exposure``: per image id, None where unknown."""
    parent: dict[int, int] = {}
    known: dict[int, tuple[datetime, bool] | None] = {}

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


def recorded_exposure(info: dict[str, Any]) -> tuple[datetime, bool] | None:
    """The exposure time as :func:`exposure_time` gives it, from what :func:`read_metadata`
    returned or the catalog recorded (``exposed_at``, ``exposure_subsecond``)."""
    when = info.get("exposed_at")
    return None if when is None else (when, bool(info.get("exposure_subsecond")))


def read_metadata(data: bytes, file_name: str | None) -> dict[str, Any]:
    """``bytes``, ``file_name``, ``kind`` (photo | video), ``format`` (JPEG, HEIC, DNG, MP4, ...),
    ``width``, ``height`` (as displayed: EXIF rotation or a video's display matrix applied),
    ``captured_at`` (EXIF, camera-local; a video's creation time), ``exposed_at`` and
    ``exposure_subsecond`` (DateTimeOriginal with SubSecTimeOriginal), ``gps_latitude``,
    ``gps_longitude``, ``duration_s`` (videos); None where unknown."""
    found = read_media_metadata(data)
    found.pop("orientation", None)
    return {"bytes": len(data), "file_name": (file_name or None) and file_name[:255], **found}
