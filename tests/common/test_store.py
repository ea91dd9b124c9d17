from __future__ import annotations

from pathlib import Path

import pytest

from services.common.store import FeatureStore, StoreMismatchError

META = {"feature": "test", "dim": 4}


def test_add_get_delete_and_generation(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, META)
    assert store.generation == 0
    assert store.add(7, b"seven")
    assert not store.add(7, b"other"), "an existing id is never overwritten"
    assert store.get(7) == b"seven"
    assert store.delete(7)
    assert not store.delete(7)
    assert store.get(7) is None
    assert store.generation == 2  # one add + one delete; refused writes do not count
    _, changes = store.changes_since(0)  # type: ignore[misc]
    assert [(op, i) for _, op, i in changes] == [(b"A", 7), (b"D", 7)]


def test_keys_are_big_endian_so_iteration_is_numeric(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, META)
    for i in (2**40, 3, 256, 0):
        store.add(i, b"x")
    assert store.ids() == [0, 3, 256, 2**40]


def test_map_grows_on_demand(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, META, initial_map_size=256 * 1024)
    payload = b"\xab" * 50_000
    for i in range(100):  # ~5 MB, far beyond the initial 256 KiB map
        assert store.add(i, payload)
    assert store.count() == 100
    store.close()
    reopened = FeatureStore(tmp_path, META, initial_map_size=256 * 1024)
    assert reopened.get(99) == payload


def test_metadata_mismatch_is_refused_with_both_values(tmp_path: Path) -> None:
    FeatureStore(tmp_path, META).close()
    with pytest.raises(StoreMismatchError) as err:
        FeatureStore(tmp_path, {"feature": "test", "dim": 8})
    assert "stored 4" in str(err.value) and "configured 8" in str(err.value)


def test_log_trim_and_coverage(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, META)
    for i in range(5):
        store.add(i, b"v")
    store.trim_log(3)
    assert store.changes_since(2) is None, "entries <= 3 are gone, so generation 2 cannot be replayed"
    current, changes = store.changes_since(3)  # type: ignore[misc]
    assert current == 5 and [i for _, _, i in changes] == [3, 4]


def test_add_many_is_one_transaction_that_skips_existing(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, META)
    store.add(1, b"old")
    assert store.add_many([(1, b"new"), (2, b"two")]) == [False, True]
    assert store.get(1) == b"old"
