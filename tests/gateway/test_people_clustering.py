"""The people grouping (gateway/people/clustering.py) on descriptors whose geometry the test sets:
incremental assignment, the core-point rule, the retry pass, order independence against a plain
DBSCAN, and every decision a person makes surviving a full regrouping."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gateway.people.clustering import PeopleGrouping
from gateway.people.faces import DIM, Face, GroupingSettings, Person, Rejection

SETTINGS = GroupingSettings(max_distance=0.5, min_faces=3, neighbours=16)


def centre(k: int) -> np.ndarray:
    """Person k's centre: people are 1.0 or more apart."""
    out = np.zeros(DIM, np.float32)
    out[k] = 1.0
    return out


def around(k: int, n: int, spread: float = 0.08, seed: int = 0) -> np.ndarray:
    """n faces near person k's centre, pairwise well within 0.5."""
    rng = np.random.default_rng(seed + 1000 * k)
    noise = rng.standard_normal((n, DIM)).astype(np.float32)
    noise *= spread / np.linalg.norm(noise, axis=1, keepdims=True)
    return centre(k) + noise


def add_faces(grouping: PeopleGrouping, image_id: int, vectors: np.ndarray) -> None:
    """Each face as its own image (image_id, image_id + 1, ...), added one at a time."""
    for i, vector in enumerate(vectors):
        grouping.add([(image_id + i, 0)], vector[None])


def persons(grouping: PeopleGrouping, first: int, n: int) -> list[int | None]:
    return [grouping.person_of((first + i, 0)) for i in range(n)]


def test_a_face_joins_the_person_of_its_nearest_labelled_neighbour() -> None:
    grouping = PeopleGrouping(SETTINGS)
    add_faces(grouping, 0, around(0, 3))
    (person,) = set(persons(grouping, 0, 3))
    assert person is not None
    changes = grouping.add([(10, 0)], around(0, 1, seed=5))
    assert grouping.person_of((10, 0)) == person
    assert changes.faces[(10, 0)] == Face(10, 0, person, False)
    # a face of nobody known waits, unassigned (and is reported, so the gateway stores it)
    changes = grouping.add([(11, 0)], centre(7)[None])
    assert grouping.person_of((11, 0)) is None and changes.faces[(11, 0)].person_id is None
    # two faces of one image are added together
    grouping.add([(12, 0), (12, 1)], np.vstack([around(0, 1, seed=9), centre(8)]))
    assert grouping.person_of((12, 0)) == person and grouping.person_of((12, 1)) is None


def test_a_person_is_founded_only_by_a_core_point() -> None:
    grouping = PeopleGrouping(SETTINGS)
    faces = around(1, 3)
    add_faces(grouping, 0, faces[:2])
    assert persons(grouping, 0, 2) == [None, None]  # two faces within reach: not yet a person
    changes = grouping.add([(2, 0)], faces[2:])
    found = set(persons(grouping, 0, 3))
    assert len(found) == 1 and None not in found  # the third founds it; the waiting two join
    assert set(changes.people) == found and {key for key in changes.faces} == {(0, 0), (1, 0), (2, 0)}
    pairs = PeopleGrouping(GroupingSettings(max_distance=0.5, min_faces=2))
    add_faces(pairs, 0, faces[:2])
    assert len(set(persons(pairs, 0, 2)) - {None}) == 1


def test_waiting_faces_are_placed_by_the_retry_pass() -> None:
    """Faces loaded from the gateway's records unassigned (a bulk load) wait for the pass."""
    vectors = np.vstack([around(0, 4), around(1, 3), centre(9)[None]])
    faces = [Face(i, 0) for i in range(len(vectors))]
    grouping = PeopleGrouping(SETTINGS, faces, vectors)
    assert all(grouping.person_of(f.key) is None for f in faces)
    changes = grouping.retry_unassigned()
    a, b, stranger = set(persons(grouping, 0, 4)), set(persons(grouping, 4, 3)), grouping.person_of((7, 0))
    assert len(a) == len(b) == 1 and a != b and None not in a | b and stranger is None
    assert len(changes.faces) == 7 and len(changes.people) == 2
    assert not grouping.retry_unassigned()  # nothing left to place: no changes


def dbscan_core_partition(vectors: np.ndarray, settings: GroupingSettings) -> set[frozenset[int]]:
    """Plain DBSCAN's clusters of core points (border points may go either way in DBSCAN too)."""
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    near = distances <= settings.max_distance
    core = near.sum(axis=1) >= settings.min_faces
    label = -np.ones(len(vectors), int)
    for start in np.nonzero(core)[0]:
        if label[start] >= 0:
            continue
        label[start] = start
        stack = [start]
        while stack:
            i = stack.pop()
            for j in np.nonzero(near[i] & core)[0]:
                if label[j] < 0:
                    label[j] = start
                    stack.append(j)
    return {frozenset(np.nonzero(label == c)[0].tolist()) for c in set(label[core].tolist())}


def test_people_do_not_depend_on_the_order_faces_came_in() -> None:
    """Chains of faces 0.3 apart (several core points bridge automatic persons that began apart)
    and isolated faces: every order gives DBSCAN's clusters of core points."""
    rng = np.random.default_rng(3)
    chains = []
    for k in range(4):
        start = centre(k) * 2
        step = rng.standard_normal(DIM).astype(np.float32)
        step *= 0.3 / np.linalg.norm(step)
        chains.append(start + np.arange(6)[:, None] * step)
    vectors = np.vstack([*chains, centre(20)[None] * 3, centre(21)[None] * 3])
    expected = dbscan_core_partition(vectors, SETTINGS)
    assert len(expected) == 4
    for seed in range(6):
        order = list(range(len(vectors)))
        random.Random(seed).shuffle(order)
        grouping = PeopleGrouping(SETTINGS)
        for row in order:
            grouping.add([(row, 0)], vectors[row][None])
        found = {}
        for row in range(len(vectors)):
            found.setdefault(grouping.person_of((row, 0)), set()).add(row)
        for cluster in expected:
            (person,) = {grouping.person_of((row, 0)) for row in cluster}
            assert person is not None and cluster <= found[person], seed
        assert grouping.person_of((24, 0)) is None and grouping.person_of((25, 0)) is None


def decided_grouping() -> tuple[PeopleGrouping, dict[str, int]]:
    """Five groups of faces (A..E, 5 each, images 0-24), a stranger (image 30), and decisions:
    the stranger moved into A, face 4 told it is not A, B merged into A, C named, D hidden."""
    grouping = PeopleGrouping(SETTINGS)
    for k in range(5):
        add_faces(grouping, 5 * k, around(k, 5))
    grouping.add([(30, 0)], centre(30)[None])
    ids = {name: grouping.person_of((5 * k, 0)) for k, name in enumerate("ABCDE")}
    assert len(set(ids.values())) == 5 and None not in ids.values()
    grouping.move((30, 0), ids["A"])
    changes = grouping.reject((4, 0), ids["A"])
    assert changes.rejections_added == {Rejection(4, 0, ids["A"])}
    assert grouping.person_of((4, 0)) is None  # its neighbours are all A's: it waits
    changes = grouping.merge(ids["B"], ids["A"])
    assert changes.people[ids["B"]].merged_into == ids["A"]
    grouping.rename(ids["C"], "Carol")
    grouping.hide(ids["D"])
    return grouping, ids  # type: ignore[return-value]


def check_decisions(grouping: PeopleGrouping, ids: dict[str, int]) -> None:
    a = ids["A"]
    assert grouping.person_of((30, 0)) == a  # moved there: pinned
    assert grouping.person_of((4, 0)) != a  # not A, by merge or by neighbours
    assert persons(grouping, 0, 4) == [a] * 4 and persons(grouping, 5, 5) == [a] * 5  # merged
    assert persons(grouping, 10, 5) == [ids["C"]] * 5 and grouping.people[ids["C"]].name == "Carol"
    assert persons(grouping, 15, 5) == [ids["D"]] * 5 and grouping.people[ids["D"]].hidden
    assert grouping.people[ids["B"]].merged_into == a and grouping.faces_of(ids["B"]) == []


def test_every_decision_survives_a_regrouping() -> None:
    grouping, ids = decided_grouping()
    check_decisions(grouping, ids)
    e_before = persons(grouping, 20, 5)
    changes = grouping.regroup()
    check_decisions(grouping, ids)
    # the automatic person E is regrouped into the same faces under the same id: nothing to write
    assert persons(grouping, 20, 5) == e_before and not changes.faces and not changes.removed_people
    # ... and from the records the gateway keeps, as after a restart
    faces = list(grouping.faces())
    vectors = np.vstack([grouping.index.reconstruct((f.image_id << 10) | f.index) for f in faces])
    reloaded = PeopleGrouping(SETTINGS, faces, vectors, grouping.people.values(), grouping.rejections())
    reloaded.regroup()
    check_decisions(reloaded, ids)
    # new faces near the rejected one never bring it into A, however dense its neighbourhood
    add_faces(reloaded, 40, around(0, 3, seed=77))
    reloaded.retry_unassigned()
    check_decisions(reloaded, ids)


def test_a_face_moved_back_withdraws_its_rejection() -> None:
    grouping, ids = decided_grouping()
    changes = grouping.move((4, 0), ids["A"])
    assert changes.rejections_removed == {Rejection(4, 0, ids["A"])}
    assert grouping.person_of((4, 0)) == ids["A"] and not list(grouping.rejections())


def test_kept_people_absorb_automatic_ones_but_never_each_other() -> None:
    bridge = (centre(0) + centre(1)) / 2  # 0.71 from each centre
    left = np.vstack([centre(0) + (bridge - centre(0)) * t for t in (0.0, 0.15, 0.3, 0.45)])
    right = np.vstack([centre(1) + (bridge - centre(1)) * t for t in (0.0, 0.15, 0.3, 0.45)])
    for named in ("left", "both", "none"):
        grouping = PeopleGrouping(SETTINGS)
        add_faces(grouping, 0, left)
        add_faces(grouping, 10, right)
        p_left, p_right = grouping.person_of((0, 0)), grouping.person_of((10, 0))
        assert p_left != p_right
        if named in ("left", "both"):
            grouping.rename(p_left, "Lee")  # type: ignore[arg-type]
        if named == "both":
            grouping.rename(p_right, "Rae")  # type: ignore[arg-type]
        grouping.add([(20, 0)], bridge[None])  # a core face within reach of both
        if named == "both":
            assert {grouping.person_of((0, 0)), grouping.person_of((10, 0))} == {p_left, p_right}
        else:  # one person now, under the kept (named) one's id when there is one
            assert grouping.person_of((10, 0)) == grouping.person_of((0, 0)) == grouping.person_of((20, 0))
            if named == "left":
                assert grouping.person_of((10, 0)) == p_left and p_right not in grouping.people


def test_removing_images_forgets_their_faces() -> None:
    grouping = PeopleGrouping(SETTINGS)
    add_faces(grouping, 0, around(0, 3))
    add_faces(grouping, 10, around(1, 3))
    automatic, named = grouping.person_of((0, 0)), grouping.person_of((10, 0))
    grouping.rename(named, "Nell")  # type: ignore[arg-type]
    grouping.reject((1, 0), named)  # type: ignore[arg-type]
    changes = grouping.remove_images([0, 1, 2, 10, 11, 12, 99])
    assert len(grouping) == 0 and len(changes.removed_faces) == 6
    assert changes.rejections_removed == {Rejection(1, 0, named)}  # type: ignore[arg-type]
    assert automatic in changes.removed_people and automatic not in grouping.people
    assert named in grouping.people and named not in changes.removed_people  # a name outlives its faces
    add_faces(grouping, 50, around(0, 3))  # the index still works after removals
    assert len(set(persons(grouping, 50, 3)) - {None}) == 1


def test_bad_input_is_refused() -> None:
    grouping = PeopleGrouping(SETTINGS)
    grouping.add([(1, 0)], centre(0)[None])
    with pytest.raises(ValueError, match="already present"):
        grouping.add([(1, 0)], centre(0)[None])
    with pytest.raises(ValueError, match="descriptors"):
        grouping.add([(2, 0), (3, 0)], centre(0)[None])
    with pytest.raises(KeyError):
        grouping.move((1, 0), 12345)
    with pytest.raises(ValueError, match="unknown people"):
        PeopleGrouping(SETTINGS, [Face(1, 0, 7)], centre(0)[None])
    with pytest.raises(ValueError):
        GroupingSettings(min_faces=0)
    person, _ = grouping.new_person("Ann")
    with pytest.raises(ValueError):
        grouping.merge(person, person)
    assert grouping.people[person] == Person(person, "Ann")


def test_a_regrouping_redoes_automatic_people_and_leaves_kept_ones() -> None:
    """Records where one automatic person holds two groups of faces (as an early, sparse grouping
    may leave them) and a named person holds two other groups: the regrouping splits the first
    (the larger part keeps its id), not the second."""
    vectors = np.vstack([around(0, 4), around(1, 3), around(2, 3), around(3, 3)])
    people = [Person(1), Person(2, name="Mixed")]
    faces = [Face(i, 0, 1) for i in range(7)] + [Face(i, 0, 2) for i in range(7, 13)]
    grouping = PeopleGrouping(SETTINGS, faces, vectors, people)
    changes = grouping.regroup()
    assert persons(grouping, 0, 4) == [1] * 4  # the larger part keeps the id
    (split,) = set(persons(grouping, 4, 3))
    assert split not in (None, 1, 2) and set(changes.faces) == {(4, 0), (5, 0), (6, 0)}
    assert persons(grouping, 7, 6) == [2] * 6  # the named person is left as it was


def test_a_merge_leaves_out_a_face_that_rejected_either_person() -> None:
    """A face told it is not A that later joined B (by the rule, B not being rejected then) leaves
    when A and B are merged, and waits; the other faces are pinned into B."""
    grouping = PeopleGrouping(SETTINGS)
    add_faces(grouping, 0, around(0, 4))
    (a,) = set(persons(grouping, 0, 4))
    grouping.reject((1, 0), a)
    assert grouping.person_of((1, 0)) is None
    b, _ = grouping.new_person("B")
    grouping.move((2, 0), b)
    grouping.retry_unassigned()
    assert grouping.person_of((1, 0)) == b  # its neighbour in B is not rejected
    changes = grouping.merge(a, b)
    assert grouping.person_of((1, 0)) is None and not changes.faces[(1, 0)].pinned
    assert persons(grouping, 0, 4) == [b, None, b, b]
    grouping.regroup()
    assert persons(grouping, 0, 4) == [b, None, b, b]
    # taken back, the face joins at the next grouping
    assert grouping.withdraw((1, 0), b).rejections_removed == {Rejection(1, 0, b)}
    assert not grouping.withdraw((1, 0), b)
    grouping.retry_unassigned()
    assert grouping.person_of((1, 0)) == b
