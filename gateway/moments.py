"""Moments as the gateway composes them: the vector service's clusters split where the capture times
(which only the gateway's catalog knows) leave a gap."""

from __future__ import annotations

import itertools


def split_by_time(members: list[int], times: dict[int, float], max_gap_s: float) -> list[list[int]]:
    """Split one moment (members in their order) wherever two photos with a capture time, adjacent in
    time, are more than ``max_gap_s`` apart. Members without a time stay with the first part (the one
    holding the representative when it has a time, else the earliest). Each part keeps the order."""
    timed = sorted((times[m], m) for m in members if m in times)
    if len(timed) < 2:
        return [members]
    part_of: dict[int, int] = {}
    part = 0
    for (prev, _), (now, image) in itertools.pairwise(timed):
        if now - prev > max_gap_s:
            part += 1
        part_of[image] = part
    part_of[timed[0][1]] = 0
    if part == 0:
        return [members]
    home = part_of.get(members[0], 0)
    parts: list[list[int]] = [[] for _ in range(part + 1)]
    for m in members:
        parts[part_of.get(m, home)].append(m)
    return sorted((p for p in parts if p), key=lambda p: members.index(p[0]))
