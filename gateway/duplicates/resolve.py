"""``/duplicate_groups/resolve``: keep some images of a group, delete the others everywhere, say what
the kept ones should inherit, and remember the group as resolved.

The deletes go through the gateway's reliable delete (gateway/writer.py, ``FanOutWriter.delete``),
one image after another: every feature service is told at once; a service that does not answer now
keeps its part pending and gets it from the retry worker when it is back (the image leaves the
groups at once: the catalog logs its removal with the delete). The reply reports per image:
``deleted`` (every service confirmed), ``pending`` (the retry worker finishes it) or ``failed``
(a service answered with an error that is not retried; ``ambience catalog retry`` sends it again).

What the keepers inherit is computed before anything is deleted (a delete forgets the image's
facts), for the gallery to merge, as Immich merges albums, ratings and agreeing GPS into the kept
asset; ambience keeps no albums or ratings, so it is:

- ``captured_at``: the earliest capture time of the group (a copy may be the only one that kept it),
  with the image it came from;
- ``gps``: the position, when every image of the group that has one agrees within
  :data:`GPS_AGREEMENT_M` (else null, ``gps_agreed`` false);
- ``file_names``: the names of the removed files (a gallery may keep them as aliases).

The resolution is recorded as a ``resolved`` decision over the kept images
(gateway/duplicates/decided.py): a group of them alone is not shown again, on any replica. A later
add of a copy of the keeper is a new duplicate and forms a new group with it (and with the other
kept images linked to it): it is shown, to be resolved in its turn.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.catalog import DONE, PENDING
from gateway.duplicates.decisions import PostgresDecisionStore
from gateway.image_facts import ImageFacts
from gateway.writer import Outcomes, reply_entries

#: Two GPS positions this close (metres) are one place.
GPS_AGREEMENT_M = 50.0
#: Images one resolve may name.
MAX_RESOLVE_IMAGES = 1000

Delete = Callable[[int], Awaitable[Outcomes]]


def metres_apart(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) positions."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(min(1.0, math.sqrt(h)))


def inheritance(keep: list[int], remove: list[int], info: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What the kept images should take from the group (facts per image in ``info``)."""
    everyone = [*keep, *remove]
    timed = [(info[i]["captured_at"], i) for i in everyone if info.get(i, {}).get("captured_at") is not None]
    earliest = min(timed) if timed else None
    placed = [
        (i, (info[i]["gps_latitude"], info[i]["gps_longitude"]))
        for i in everyone
        if info.get(i, {}).get("gps_latitude") is not None and info[i].get("gps_longitude") is not None
    ]
    agreed = all(metres_apart(placed[0][1], p) <= GPS_AGREEMENT_M for _, p in placed[1:]) if placed else True
    return {
        "captured_at": earliest[0].isoformat() if earliest else None,
        "captured_at_from": earliest[1] if earliest else None,
        "gps": {"latitude": placed[0][1][0], "longitude": placed[0][1][1]} if placed and agreed else None,
        "gps_from": [i for i, _ in placed],
        "gps_agreed": agreed,
        "file_names": [info[i]["file_name"] for i in remove if info.get(i, {}).get("file_name")],
    }


def delete_status(outcomes: Outcomes) -> str:
    """``deleted``, ``pending`` (the retry worker finishes it) or ``failed``."""
    states = {o.state for o in outcomes.values()}
    if states <= {DONE}:
        return "deleted"
    if PENDING in states:
        return "pending"
    return "failed"


class Resolver:
    def __init__(self, facts: ImageFacts, decisions: PostgresDecisionStore) -> None:
        self.facts = facts
        self.decisions = decisions

    async def resolve(self, kind: str, keep: list[int], remove: list[int], delete: Delete) -> dict[str, Any]:
        if not keep:
            raise ValueError("keep: name at least one image to keep")
        if set(keep) & set(remove):
            raise ValueError(f"images both kept and removed: {sorted(set(keep) & set(remove))}")
        if len(keep) + len(remove) > MAX_RESOLVE_IMAGES:
            raise ValueError(f"a resolve names at most {MAX_RESOLVE_IMAGES} images")
        keep, remove = list(dict.fromkeys(keep)), list(dict.fromkeys(remove))
        info = await run_in_threadpool(self.facts.info, [*keep, *remove])
        inherit = inheritance(keep, remove, info)
        removed = []
        for image_id in remove:
            outcomes = await delete(image_id)
            removed.append(
                {"image_id": image_id, "status": delete_status(outcomes), "services": reply_entries(outcomes)}
            )
        detail = {
            "removed": remove,
            "outcome": {str(r["image_id"]): r["status"] for r in removed},
            "inherit": inherit,
        }
        resolution = await run_in_threadpool(self.decisions.add, "resolved", kind, keep, detail)
        return {
            "kind": kind,
            "keep": keep,
            "removed": removed,
            "inherit": inherit,
            "resolution": resolution.id,
        }
