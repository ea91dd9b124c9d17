from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.common.errors import StoreMismatchError
from services.common.features.index import write_atomic
from services.common.features.locks import RWLock
from services.common.features.store import FeatureStore

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


def test_map_growth_is_not_starved_by_overlapping_readers(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, META, initial_map_size=256 * 1024)
    stop = threading.Event()
    handoffs_while_growth_waits = 0
    baton = [threading.Event(), threading.Event()]

    def reader(me: int) -> None:
        # Two readers hand a read over to each other so that one is always open, as busy
        # searches do: each releases only once the other holds its own (or after a short wait
        # when the other is held back by a waiting writer).
        nonlocal handoffs_while_growth_waits
        while not stop.is_set():
            with store._read_txn() as txn:
                txn.get(b"x")
                baton[me].set()
                baton[1 - me].wait(0.05)
                baton[1 - me].clear()
                if store._resize_lock._writers_waiting:
                    handoffs_while_growth_waits += 1
                    if handoffs_while_growth_waits >= 200:
                        stop.set()

    readers = [threading.Thread(target=reader, args=(i,)) for i in (0, 1)]
    for t in readers:
        t.start()
    baton[0].wait(5)
    store.add(1, b"\xab" * 1_000_000)  # needs the map to grow fourfold
    stop.set()
    for t in readers:
        t.join(5)
    assert handoffs_while_growth_waits < 200, "the map only grew once the readers stopped"
    assert store.get(1) == b"\xab" * 1_000_000


def test_a_thread_may_nest_reads_while_a_writer_waits(tmp_path: Path) -> None:
    lock = RWLock(prefer_writers=True)
    order: list[str] = []
    outer_held, writer_waiting = threading.Event(), threading.Event()
    release_outer = threading.Event()

    def outer_reader() -> None:
        with lock.read():
            outer_held.set()
            writer_waiting.wait(5)
            with lock.read():  # nested: must not wait behind the writer that waits for us
                order.append("nested read")
            release_outer.wait(5)

    def writer() -> None:
        with lock.write():
            order.append("write")

    def late_reader() -> None:
        with lock.read():
            order.append("late read")

    a = threading.Thread(target=outer_reader)
    a.start()
    outer_held.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    deadline = time.monotonic() + 5
    while not lock._writers_waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    writer_waiting.set()
    late = threading.Thread(target=late_reader)
    late.start()
    while order != ["nested read"] and time.monotonic() < deadline:
        time.sleep(0.001)
    release_outer.set()
    for t in (a, w, late):
        t.join(5)
    assert not a.is_alive(), "the nested read deadlocked behind the waiting writer"
    assert order == ["nested read", "write", "late read"]


def test_snapshot_temp_files_are_unique_per_writer(tmp_path: Path) -> None:
    target = tmp_path / "index.snapshot"
    # Two replicas sharing a data dir write the same snapshot at once.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: write_atomic(target, bytes([i]) * 200_000), range(32)))
    data = target.read_bytes()
    assert data == data[:1] * 200_000, "a snapshot mixed the bytes of two writers"
    assert list(tmp_path.iterdir()) == [target], "a temporary file was left behind"
