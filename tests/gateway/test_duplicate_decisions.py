"""Decisions about duplicate groups (gateway/duplicates/decided.py): the groups they make of the
links, one change at a time as a replica follows them, equal to the groups loaded whole."""

from __future__ import annotations

import random

from gateway.duplicates.decided import DecidedGroups, Decision, conflicts

KINDS = ["copies"]


def apart(id_: int, *images: int) -> Decision:
    return Decision(id_, "not_duplicates", None, tuple(images))


def together(id_: int, *images: int) -> Decision:
    return Decision(id_, "duplicates", "copies", tuple(images))


def shown(groups: DecidedGroups) -> list[list[int]]:
    return sorted(sorted(g) for g in groups.groups())


def test_not_duplicates_splits_a_group_even_through_other_images() -> None:
    groups = DecidedGroups()
    groups.apply_decisions([apart(1, 1, 3)])
    groups.add(1, [])
    groups.add(2, [(1, 5.0)])
    groups.add(3, [(2, 4.0)])  # 3 is nearer 2 than 1 is: 2 goes with 3
    assert shown(groups) == [[2, 3]]
    groups.add(4, [(1, 1.0), (3, 1.0)])  # a copy of both joins the first it is nearest to, never both
    assert shown(groups) == [[1, 4], [2, 3]]
    assert groups.distances_from(4) == {4: (0.0, True), 1: (1.0, True)}
    groups.apply_decisions([])  # undone: the links make one group again
    assert shown(groups) == [[1, 2, 3, 4]]


def test_duplicates_joins_unlinked_images_and_an_undo_splits_them() -> None:
    groups = DecidedGroups()
    for image in (1, 2, 3):
        groups.add(image, [])
    groups.apply_decisions([together(7, 1, 2, 9)])  # 9 is not recorded yet: joins when it comes
    assert shown(groups) == [[1, 2]]
    assert groups.distances_from(1) == {1: (0.0, True), 2: (0.0, True)}
    groups.add(9, [])
    assert shown(groups) == [[1, 2, 9]]
    groups.remove(2)  # the decision holds for the images that are left
    assert shown(groups) == [[1, 9]]
    groups.add(2, [])
    assert shown(groups) == [[1, 2, 9]]
    groups.apply_decisions([])
    assert shown(groups) == []


def test_a_resolution_hides_the_kept_images_until_a_new_one_joins() -> None:
    groups = DecidedGroups()
    groups.add(1, [])
    groups.add(2, [(1, 3.0)])
    groups.apply_decisions([Decision(5, "resolved", "copies", (1, 2))])
    assert shown(groups) == []
    groups.add(3, [(1, 2.0)])
    assert shown(groups) == [[1, 2, 3]]


def test_conflicting_decisions_are_named() -> None:
    held = [together(1, 1, 2), together(2, 2, 3), apart(3, 5, 6)]
    assert conflicts(held, apart(-1, 1, 3), KINDS) == [1, 2]
    assert conflicts(held, apart(-1, 1, 5), KINDS) == []
    assert conflicts(held, together(-1, 6, 5), KINDS) == [3]
    assert conflicts(held, together(-1, 4, 5), KINDS) == []
    # a decision for another kind does not clash
    assert conflicts([Decision(9, "duplicates", "similar", (1, 3))], apart(-1, 1, 3), ["copies"]) == []


def test_changes_applied_one_at_a_time_equal_the_groups_loaded_whole() -> None:
    rng = random.Random(30)
    links: dict[int, list[tuple[int, float]]] = {}
    present: set[int] = set()
    decisions: list[Decision] = []
    live = DecidedGroups()
    for step in range(400):
        roll = rng.random()
        image = rng.randint(1, 40)
        if roll < 0.55 and image not in present:
            found = [
                (o, float(rng.randint(1, 30))) for o in rng.sample(sorted(present), min(2, len(present)))
            ]
            links[image] = found
            present.add(image)
            live.add(image, found)
        elif roll < 0.75 and image in present:
            present.discard(image)
            links.pop(image, None)
            for other in links:
                links[other] = [(o, d) for o, d in links[other] if o != image]
            live.remove(image)
        elif roll < 0.9:
            kind = "not_duplicates" if rng.random() < 0.6 else "duplicates"
            candidate = Decision(step + 100, kind, None, tuple(sorted(rng.sample(range(1, 41), 3))))
            if not conflicts(decisions, candidate, KINDS):
                decisions.append(candidate)
                live.apply_decisions(decisions)
        elif decisions:
            decisions.pop(rng.randrange(len(decisions)))
            live.apply_decisions(decisions)
        whole = DecidedGroups()
        whole.apply_decisions(decisions)
        for i in sorted(present):
            whole.add(
                i,
                [(o, d) for o, d in links[i] if o < i]
                + [(o, d) for o in present for (x, d) in links[o] if x == i and o < i],
            )
        assert shown(live) == shown(whole), step
        for d in decisions:  # every decision holds
            if d.decision == "not_duplicates":
                for g in live.groups():
                    assert len(g & set(d.image_ids)) <= 1
            else:
                held = [i for i in d.image_ids if i in present]
                assert len({min(live.group_with(i)) for i in held}) <= 1
