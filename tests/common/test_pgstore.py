"""The PostgreSQL feature store against a real server: the LMDB store's contract, plus what only a
shared store has (several replicas of one store, trimming held back by the slowest, notifications,
gap-free generations under concurrent writers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import StoreMismatchError
from services.common.features.store import FeatureStore
from services.common.postgres.database import Database
from services.common.postgres.store import COMPONENT, MIGRATIONS, PostgresFeatureStore

META = {"feature": "test", "dim": 4}

OpenStore = Callable[..., Any]


@pytest.fixture
def database(pg_dsn: str) -> Iterator[Database]:
    db = Database(pg_dsn, migrations={COMPONENT: MIGRATIONS}, pool_size=8)
    yield db
    db.close()


@pytest.fixture(params=["lmdb", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """A factory for the store under test; both kinds must keep the same contract."""
    if request.param == "lmdb":
        return lambda meta=META, replica="a": FeatureStore(tmp_path, meta)
    db = request.getfixturevalue("database")
    return lambda meta=META, replica="a": PostgresFeatureStore(db, "phash", meta, replica=replica)


def test_add_get_delete_and_generation(open_store: OpenStore) -> None:
    store = open_store()
    assert store.generation == 0
    assert store.add(7, b"seven")
    assert not store.add(7, b"other"), "an existing id is never overwritten"
    assert store.get(7) == b"seven" and 7 in store
    assert store.delete(7)
    assert not store.delete(7)
    assert store.get(7) is None and 7 not in store
    assert store.generation == 2  # one add + one delete; refused writes do not count
    _, changes = store.changes_since(0)
    assert [(op, i) for _, op, i in changes] == [(b"A", 7), (b"D", 7)]


def test_ids_are_numeric_order_and_counts_follow(open_store: OpenStore) -> None:
    store = open_store()
    for i in (2**40, 3, 256, 0):
        store.add(i, b"x" * 10)
    assert store.ids() == [0, 3, 256, 2**40]
    assert store.count() == 4
    store.delete(3)
    assert store.count() == 3


def test_metadata_mismatch_is_refused_with_both_values(open_store: OpenStore) -> None:
    open_store().close()
    with pytest.raises(StoreMismatchError) as err:
        open_store({"feature": "test", "dim": 8})
    assert "stored 4" in str(err.value) and "configured 8" in str(err.value)


def test_log_trim_and_coverage(open_store: OpenStore) -> None:
    store = open_store()
    for i in range(5):
        store.add(i, b"v")
    store.trim_log(3)
    assert store.changes_since(2) is None, "entries <= 3 are gone, so generation 2 cannot be replayed"
    current, changes = store.changes_since(3)
    assert current == 5 and [i for _, _, i in changes] == [3, 4]


def test_add_many_is_one_transaction_that_skips_existing(open_store: OpenStore) -> None:
    store = open_store()
    store.add(1, b"old")
    assert store.add_many([(1, b"new"), (2, b"two")]) == [False, True]
    assert store.get(1) == b"old"


def test_snapshot_items_is_consistent_with_its_generation(open_store: OpenStore) -> None:
    store = open_store()
    store.add_many([(i, bytes([i]) * 8) for i in range(10)])
    generation, batches = store.snapshot_items(batch=3)
    store.add(100, b"later")  # after the snapshot's generation: must not be in it
    items = [item for chunk in batches for item in chunk]
    assert generation == 10
    assert [i for i, _ in items] == list(range(10)) and items[4][1] == bytes([4]) * 8


# -- only a shared store ------------------------------------------------------------------------


def test_replicas_see_each_others_writes_through_the_log(database: Database) -> None:
    a = PostgresFeatureStore(database, "phash", META, replica="host-a")
    b = PostgresFeatureStore(database, "phash", META, replica="host-b")
    assert a.uuid == b.uuid, "one store, whichever replica opened it first"
    a.add(1, b"one")
    b.delete(1)
    b.add(2, b"two")
    current, changes = a.changes_since(0)
    assert current == 3 and [(op, i) for _, op, i in changes] == [(b"A", 1), (b"D", 1), (b"A", 2)]
    assert a.get(2) == b"two" and a.get_many([1, 2]) == {2: b"two"}


def test_stores_of_different_services_are_apart(database: Database) -> None:
    phash = PostgresFeatureStore(database, "phash", META, replica="r")
    color = PostgresFeatureStore(database, "color", {"feature": "color", "dim": 512}, replica="r")
    phash.add(1, b"p")
    assert color.get(1) is None and color.count() == 0 and color.generation == 0


def test_trim_waits_for_the_slowest_live_replica(database: Database) -> None:
    a = PostgresFeatureStore(database, "phash", META, replica="host-a")
    b = PostgresFeatureStore(database, "phash", META, replica="host-b")
    for i in range(6):
        a.add(i, b"v")
    b.trim_log(2)  # b's snapshot covers 2
    a.trim_log(6)  # a's covers everything; b still needs 3..6
    assert a.changes_since(2) is not None, "b must be able to catch up from its snapshot"
    assert a.changes_since(1) is None
    b.trim_log(6)
    assert a.changes_since(5) is None and a.changes_since(6) == (6, [])


def test_concurrent_writers_get_gap_free_generations_in_commit_order(database: Database) -> None:
    stores = [PostgresFeatureStore(database, "phash", META, replica=f"r{i}") for i in range(4)]

    def write(n: int) -> None:
        store = stores[n % 4]
        store.add(n, b"x")
        if n % 3 == 0:
            store.delete(n)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(200)))
    current, changes = stores[0].changes_since(0)
    assert [g for g, _, _ in changes] == list(range(1, current + 1))
    assert current == 200 + len(range(0, 200, 3))
    assert stores[1].count() == 200 - len(range(0, 200, 3))


def test_wait_for_change_wakes_on_another_replicas_write(database: Database) -> None:
    a = PostgresFeatureStore(database, "phash", META, replica="host-a")
    b = PostgresFeatureStore(database, "phash", META, replica="host-b")
    stop = threading.Event()
    a.wait_for_change(0.05, stop)  # opens the listening connection
    timer = threading.Timer(0.3, lambda: b.add(1, b"one"))
    timer.start()
    started = time.monotonic()
    a.wait_for_change(10.0, stop)
    waited = time.monotonic() - started
    timer.join()
    a.close()
    assert waited < 5.0, f"woke after {waited:.2f}s: the notification did not arrive"
    assert a.changes_since(0)[1][0][2] == 1


def test_the_digest_of_a_record_is_kept_with_it_and_goes_with_it(open_store: OpenStore) -> None:
    store = open_store()
    assert store.add(1, b"one", "ab" * 32) and store.add(2, b"two")
    assert store.digest(1) == "ab" * 32 and store.digest(2) is None
    assert not store.add(1, b"other", "cd" * 32) and store.digest(1) == "ab" * 32
    store.delete(1)
    assert store.digest(1) is None
    assert store.add(1, b"again", "cd" * 32) and store.digest(1) == "cd" * 32
