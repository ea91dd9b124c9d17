"""Pages of duplicate groups (gateway/duplicates/pages.py): a view kept up to date one change at a
time (only the changed components described again, the orders updated by bisection) equals a view
built afresh, for both orders, with its totals; cursors and numbered pages slice it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from gateway.duplicates.decided import DecidedGroups, Decision
from gateway.duplicates.keeper import DEFAULT_KEEPER_RULES, KeeperRules
from gateway.duplicates.pages import GroupPages, View, page_of

RULES = KeeperRules.of(DEFAULT_KEEPER_RULES, ["RAW", "HEIC", "JPEG"])


def facts(image: int) -> dict[str, Any]:
    rng = random.Random(image)
    return {
        "width": rng.choice([2000, 4000]),
        "height": 1500,
        "bytes": rng.randint(10_000, 5_000_000),
        "format": rng.choice(["JPEG", "HEIC", "DNG"]),
    }


def read(ids: list[int]) -> dict[int, dict[str, Any]]:
    return {i: facts(i) for i in ids}


def listing(view: View, order: str) -> list[tuple[int, int, list[int], int]]:
    ordered, _ = view.in_order(order)
    return [(s.group_id, s.keeper, sorted(s.members), s.bytes_freed) for s in ordered]


def test_a_view_updated_change_by_change_equals_one_built_afresh() -> None:
    rng = random.Random(7)
    groups, pages = DecidedGroups(), GroupPages(read)
    present: set[int] = set()
    decisions: list[Decision] = []

    async def scenario() -> None:
        for generation in range(1, 300):
            roll, image = rng.random(), rng.randint(1, 120)
            touched: set[int] = set()
            if roll < 0.6 and image not in present:
                links = [
                    (o, float(rng.randint(1, 9))) for o in rng.sample(sorted(present), min(len(present), 1))
                ]
                groups.add(image, links if rng.random() < 0.7 else [])
                present.add(image)
                touched = {image}
            elif roll < 0.85 and image in present:
                groups.remove(image)
                present.discard(image)
                touched = {image}
            elif roll < 0.95:
                ids = tuple(sorted(rng.sample(range(1, 121), 2)))
                decisions.append(Decision(generation, "not_duplicates", None, ids))
                touched = groups.apply_decisions(decisions)
            elif decisions:
                decisions.pop(0)
                touched = groups.apply_decisions(decisions)
            pages.changed("copies", touched)
            live = await pages.view("copies", groups, generation, RULES)
            fresh = await GroupPages(read).view("copies", groups, generation, RULES)
            for order in ("size", "space"):
                assert listing(live, order) == listing(fresh, order), generation
            assert (live.count, live.images, live.bytes_freed) == (
                fresh.count,
                fresh.images,
                fresh.bytes_freed,
            )

        view = await pages.view("copies", groups, 300, RULES)
        everything, paging = page_of(view, "size", 1, None, None)
        assert paging["totals"]["groups"] == len(everything) >= 5
        walked, after = [], None
        while True:
            chosen, paging = page_of(view, "size", 1, 4, after)
            walked += chosen
            if paging["next"] is None:
                break
            after = paging["next"]
        assert walked == everything
        numbered = [s for n in range(1, paging["pages"] + 1) for s in page_of(view, "size", n, 4, None)[0]]
        assert numbered == everything

    asyncio.run(scenario())
