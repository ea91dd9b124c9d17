from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ambience_support.photos import REPO
from services.common.features.collection import Collection, IndexLayout
from services.common.features.index import new_flat_index
from services.common.features.store import FeatureStore
from services.common.features.vectors import stored_rows


def flat_layout(config: str = "flat-l2-4") -> IndexLayout:
    return IndexLayout(
        config, 4, "l2", lambda: new_flat_index(4), partial(stored_rows, dtype=np.float32, width=4)
    )


def vec(i: int) -> bytes:
    return np.full(4, i, dtype=np.float32).tobytes()


def open_collection(path: Path, layout: IndexLayout | None = None) -> Collection:
    c = Collection(FeatureStore(path, {"feature": "t"}), layout or flat_layout(), path / "index.snapshot")
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
    c2 = open_collection(tmp_path, flat_layout("something else"))
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
        "import sys, numpy as np; from services.common.features.store import FeatureStore;"
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


def multi_row_layout() -> IndexLayout:
    """Records of float32 rows of 4; each row is an index row, image n's rows in block n << 3."""

    def rows(records: list[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(records), np.float32).reshape(-1, 4)

    return IndexLayout(
        "multi-l2-4", 4, "l2", lambda: new_flat_index(4), rows, row_count=lambda r: len(r) // 16, id_shift=3
    )


def test_a_layout_with_several_rows_per_image_gives_each_image_an_id_block(tmp_path: Path) -> None:
    layout = multi_row_layout()
    ids, rows = layout.index_rows([(2, vec(1) + vec(2) + vec(3)), (5, b""), (6, vec(9))])
    assert ids.tolist() == [16, 17, 18, 48] and rows.shape == (4, 4)
    assert layout.id_range(2) == (16, 24)
    assert layout.id_range(2**60 - 1)[1] == 2**63 - 1  # the last block stops at the int64 limit

    c = open_collection(tmp_path, layout)
    c.add(2, vec(1) + vec(2) + vec(3))
    c.add(6, vec(9))
    assert c.index.count() == 4
    c.delete(2)  # every row of image 2 goes, image 6's stays
    assert c.index.count() == 1
    _, found = c.index.search(np.full((1, 4), 9, np.float32), 1)
    assert found[0, 0] == 6 << 3


def test_a_layout_that_miscounts_its_rows_is_refused() -> None:
    layout = IndexLayout(
        "bad", 4, "l2", lambda: new_flat_index(4), lambda records: np.zeros((1, 4), np.float32)
    )
    with pytest.raises(ValueError, match="1 rows for 2 ids"):
        layout.index_rows([(1, vec(1)), (2, vec(2))])


def test_relayout_swaps_index_and_layout_together_and_snapshots_carry_the_new_config(tmp_path: Path) -> None:
    c = open_collection(tmp_path)
    for i in range(5):
        c.add(i, vec(i))
    doubled = IndexLayout(
        "doubled-l2-4", 4, "l2", lambda: new_flat_index(4), lambda r: 2 * stored_rows(r, np.float32, 4)
    )
    c.relayout(doubled)
    assert c.layout is doubled and c.index.count() == 5
    _, ids = c.index.search(np.full((1, 4), 6, np.float32), 1)
    assert ids[0, 0] == 3  # rows now live in the doubled space
    c.add(7, vec(7))  # later writes use the new layout too
    _, ids = c.index.search(np.full((1, 4), 14, np.float32), 1)
    assert ids[0, 0] == 7
    c.snapshot(force=True)
    c.store.close()
    reopened = open_collection(tmp_path, doubled)
    assert reopened.state.loaded_from == "snapshot"
    reopened.store.close()
    assert open_collection(tmp_path).state.loaded_from == "rebuild"  # the old layout's config differs


def test_flat_layouts_keep_the_index_configs_existing_snapshots_carry() -> None:
    rows = partial(stored_rows, dtype=np.uint8, width=72)
    assert IndexLayout.flat(576, "hamming", rows).config == "binary-flat-576"
    assert IndexLayout.flat(512, "l1", rows).config == "flat-l1-512"
    assert IndexLayout.flat(512, "hamming", rows).new_index().d == 512
