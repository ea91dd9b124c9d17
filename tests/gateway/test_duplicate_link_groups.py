"""Duplicate groups in memory (gateway/duplicates/groups.py)."""

from gateway.duplicates.groups import LinkGroups


def test_link_groups_merge_on_add_and_split_on_remove() -> None:
    groups = LinkGroups()
    groups.add(1, [])
    groups.add(2, [(1, 3.0)])
    groups.add(3, [(2, 4.0)])
    groups.add(4, [(99, 1.0)])  # links to unknown images are ignored
    assert groups.groups() == [{1, 2, 3}]
    assert groups.distances_from(1) == {1: (0.0, True), 2: (3.0, True), 3: (7.0, False)}
    groups.remove(2)
    assert sorted(map(sorted, groups.groups(min_size=1))) == [[1], [3], [4]]
