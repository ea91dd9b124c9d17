from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from ambience_support.photos import REPO
from services.common.collection import Collection
from services.common.index import AnyIndex, new_flat_index
from services.common.store import FeatureStore


class Layout:
    config = "flat-l2-4"

    def index_config(self) -> str:
        return self.config

    def new_index(self) -> AnyIndex:
        return new_flat_index(4)

    def index_rows(self, items: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array([i for i, _ in items], dtype=np.int64)
        return ids, np.stack([np.frombuffer(v, dtype=np.float32) for _, v in items])

    def id_range(self, image_id: int) -> tuple[int, int]:
        return image_id, image_id + 1


def vec(i: int) -> bytes:
    return np.full(4, i, dtype=np.float32).tobytes()


def open_collection(path: Path, layout: Layout | None = None) -> Collection:
    c = Collection(FeatureStore(path, {"feature": "t"}), layout or Layout(), path / "index.snapshot")
    c.open()
    return c


def test_snapshot_then_replay_without_rebuild(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    for i in range(10):
        c.add(i, vec(i))
    assert c.snapshot()
    c.add(10, vec(10))
    c.delete(3)
    c.store.close()

    c2 = open_collection(tmp_path)
    assert c2.state.loaded_from == "snapshot"
    assert c2.state.replayed == 2  # the add and the delete after the snapshot
    assert c2.index.count() == 10
    _, ids = c2.index.search(np.full((1, 4), 3, np.float32), 1)
    assert ids[0, 0] != 3


def test_snapshot_of_another_configuration_is_discarded(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    c.add(1, vec(1))
    c.snapshot()
    c.store.close()
    layout = Layout()
    layout.config = "something else"
    c2 = open_collection(tmp_path, layout)
    assert c2.state.loaded_from == "rebuild"
    assert c2.index.count() == 1


def test_corrupt_snapshot_falls_back_to_rebuild(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    c.add(1, vec(1))
    c.snapshot()
    c.store.close()
    (tmp_path / "index.snapshot").write_bytes(b"garbage")
    c2 = open_collection(tmp_path)
    assert c2.state.loaded_from == "rebuild" and c2.index.count() == 1


def test_writes_of_another_process_are_picked_up_by_sync(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    # e.g. `ambience import` writing while the service runs
    script = (
        "import sys, numpy as np; from services.common.store import FeatureStore;"
        "s = FeatureStore(sys.argv[1], {'feature': 't'});"
        "s.add_many([(i, np.full(4, i, dtype=np.float32).tobytes()) for i in (5, 6)])"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=REPO)
    assert c.index.count() == 0
    assert c.sync() == 2
    assert c.index.count() == 2


def test_readd_after_delete_keeps_one_entry(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    c.add(1, vec(1))
    c.delete(1)
    c.add(1, vec(2))
    assert c.index.count() == 1
    np.testing.assert_array_equal(c.index.reconstruct(1), np.full(4, 2, np.float32))


def test_damaged_snapshot_is_rebuilt_not_loaded(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    for i in range(50):
        c.add(i, vec(i))
    assert c.snapshot()
    c.store.close()
    snapshot = tmp_path / "index.snapshot"
    data = snapshot.read_bytes()
    # Damage one stored vector in place: the file still parses, only id 7's values are wrong.
    assert data.count(vec(7)) == 1
    snapshot.write_bytes(data.replace(vec(7), vec(40)))

    c2 = open_collection(tmp_path)
    assert c2.state.loaded_from == "rebuild"
    for i in range(50):
        _, ids = c2.index.search(np.full((1, 4), i, np.float32), 1)
        assert ids[0, 0] == i
    # The next snapshot is written from the rebuilt index and loads cleanly.
    c2.snapshot(force=True)
    c2.store.close()
    assert open_collection(tmp_path).state.loaded_from == "snapshot"
