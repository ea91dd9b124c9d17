"""A collection ties the durable store to its in-memory index.

The index is a materialised view of the store: every change goes to the store first (one durable
LMDB transaction that also appends to the store's change log), and the index is then brought up
to date by replaying the log from the generation it last saw. The same replay picks up records
written by other processes (``ambience import``) and finishes a snapshot that is a little behind.

Snapshots are single files (header + serialised FAISS index) written atomically and tagged with
the store's uuid, generation and a SHA-256 of the serialised index, verified on load: flipped
bytes must not load silently (and then be copied into every later snapshot). At start-up a
snapshot of this store is loaded and the log replayed from its generation; a snapshot of another
store, an unreadable or damaged one (checksum mismatch), one built with a different index
configuration, or one older than the retained log is discarded and the index is rebuilt from the
store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.features.index import (
    AnyIndex,
    VectorIndex,
    is_binary,
    new_binary_flat_index,
    new_flat_index,
    write_atomic,
)
from services.common.features.storage import Store
from services.common.features.store import OP_ADD

log = logging.getLogger(__name__)

# Version 2 added the checksum; a version 1 snapshot is discarded (rebuilt) like a corrupt one.
_MAGIC = b"AMBIDX2\n"
_LEN = struct.Struct(">I")


#: Ids of the index are int64; an image's block of ids must stay below this.
_ID_LIMIT = 2**63 - 1


@dataclass(frozen=True)
class IndexLayout:
    """How a feature's stored records become rows of its index: a value the feature declares and
    the collection uses as it is. The collection never calls back into the feature object; a
    feature whose layout changes (a trained whitening or index structure) hands the collection
    a new value (:meth:`Collection.relayout`).
    """

    #: Names the mapping from stored records to index rows (kind, metric, width, trained state):
    #: a snapshot or pgvector table built under another config is discarded and rebuilt.
    config: str
    #: Width of an index row (bits for a binary index).
    dim: int
    #: l2 (squared), ip, l1 or hamming: what the index's distances are.
    metric: str
    #: A fresh, empty index for these rows.
    new_index: Callable[[], AnyIndex]
    #: The stored records of a batch of images -> their index rows, stacked in order.
    rows: Callable[[list[bytes]], np.ndarray]
    #: Several rows per image (local features): how many rows a stored record gives. None: one.
    row_count: Callable[[bytes], int] | None = None
    #: With ``row_count``: image ``n``'s rows get the FAISS ids ``(n << id_shift) + i``.
    id_shift: int = 0

    @classmethod
    def flat(cls, dim: int, metric: str, rows: Callable[[list[bytes]], np.ndarray]) -> IndexLayout:
        """One row per image in an exact index (FAISS id = image id)."""
        if metric == "hamming":
            return cls(f"binary-flat-{dim}", dim, metric, lambda: new_binary_flat_index(dim), rows)
        return cls(f"flat-{metric}-{dim}", dim, metric, lambda: new_flat_index(dim, metric), rows)

    def index_rows(self, items: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        """(int64 FAISS ids, rows) for a batch of (image_id, stored record)."""
        records = [record for _, record in items]
        rows = self.rows(records)
        if self.row_count is None:
            ids = np.fromiter((image_id for image_id, _ in items), dtype=np.int64, count=len(items))
        else:
            counts = [self.row_count(record) for record in records]
            ids = np.concatenate(
                [
                    (image_id << self.id_shift) + np.arange(n, dtype=np.int64)
                    for (image_id, _), n in zip(items, counts, strict=True)
                ]
                or [np.zeros(0, np.int64)]
            )
        if len(ids) != len(rows):
            raise ValueError(f"layout {self.config!r} gave {len(rows)} rows for {len(ids)} ids")
        return ids, rows

    def id_range(self, image_id: int) -> tuple[int, int]:
        """[lo, hi) of the FAISS ids that belong to ``image_id``."""
        if self.row_count is None:
            return image_id, image_id + 1
        return image_id << self.id_shift, min((image_id + 1) << self.id_shift, _ID_LIMIT)


@dataclass
class IndexState:
    generation: int = 0
    loaded_from: str = "empty"  # snapshot | rebuild | empty
    replayed: int = 0  # log entries applied since start-up
    snapshot_generation: int = -1
    last_snapshot_at: float = 0.0


class Collection:
    def __init__(self, store: Store, layout: IndexLayout, snapshot_path: Path) -> None:
        self.store = store
        self.layout = layout
        self.snapshot_path = snapshot_path
        self.index = VectorIndex(layout.new_index)
        self.state = IndexState()
        self._sync_lock = threading.RLock()

    # -- start-up -----------------------------------------------------------------------------------

    def open(self) -> None:
        with self._sync_lock:
            if self._load_snapshot():
                self.sync()
            else:
                self.rebuild()

    def _load_snapshot(self) -> bool:
        path = self.snapshot_path
        if not path.exists():
            return False
        try:
            data = path.read_bytes()
            if not data.startswith(_MAGIC):
                raise ValueError("bad magic")
            (hlen,) = _LEN.unpack_from(data, len(_MAGIC))
            start = len(_MAGIC) + _LEN.size
            header = json.loads(data[start : start + hlen])
            if header["store_uuid"] != self.store.uuid:
                raise ValueError("snapshot belongs to another store")
            if header["index_config"] != self.layout.config:
                raise ValueError("index configuration changed")
            generation = int(header["generation"])
            if self.store.changes_since(generation) is None:
                raise ValueError(f"generation {generation} is not covered by the store's log")
            body = data[start + hlen :]
            if hashlib.sha256(body).hexdigest() != header["sha256"]:
                raise ValueError("checksum mismatch: the file was damaged after it was written")
            index = VectorIndex.deserialize(body, binary=bool(header["binary"]))
        except Exception as exc:
            log.warning("discarding index snapshot %s (%s); rebuilding from the store", path, exc)
            return False
        self.index.replace(index)
        self.state = IndexState(
            generation=generation,
            loaded_from="snapshot",
            snapshot_generation=generation,
            last_snapshot_at=time.monotonic(),
        )
        log.info("loaded index snapshot at generation %d (%d entries)", generation, self.index.count())
        return True

    def rebuild(self) -> None:
        """Rebuild the index from every stored record (start-up fallback)."""
        self.relayout(self.layout)

    def relayout(self, layout: IndexLayout) -> None:
        """Rebuild the index from every stored record under ``layout`` (e.g. a newly trained index
        structure) and swap both in together, with no sync or snapshot in between. Searches keep
        using the old index until then; writes wait."""
        with self._sync_lock:
            total = self.store.count()
            started = time.monotonic()
            log.info("rebuilding the index from %d stored records", total)
            fresh = VectorIndex(layout.new_index)
            generation, batches = self.store.snapshot_items()
            done, next_report = 0, time.monotonic() + 5
            for batch in batches:
                fresh.add(*layout.index_rows(batch))
                done += len(batch)
                if time.monotonic() >= next_report:
                    log.info("rebuild: %d/%d records (%.0f%%)", done, total, 100 * done / max(total, 1))
                    next_report = time.monotonic() + 5
            self.index.adopt(fresh)
            self.layout = layout
            self.state = IndexState(generation=generation, loaded_from="rebuild")
            log.info("rebuilt index: %d records in %.1fs", done, time.monotonic() - started)
            self.sync()

    # -- changes --------------------------------------------------------------------------------------

    def sync(self) -> int:
        """Apply store changes newer than the index. Returns how many log entries were applied."""
        with self._sync_lock:
            result = self.store.changes_since(self.state.generation)
            if result is None:
                self.rebuild()
                return 0
            current, changes = result
            pending_adds: list[int] = []
            for _, op, image_id in changes:
                if op == OP_ADD:
                    pending_adds.append(image_id)
                    continue
                self._flush_adds(pending_adds)
                self.index.remove_range(*self.layout.id_range(image_id))
            self._flush_adds(pending_adds)
            self.state.generation = current
            self.state.replayed += len(changes)
            return len(changes)

    def _flush_adds(self, image_ids: list[int]) -> None:
        if not image_ids:
            return
        # One read for the batch (a round trip per id would be slow on PostgreSQL). A missing id
        # was deleted again later in the log, and that delete entry follows. An id can only be
        # re-added after a delete entry, so an add never duplicates an index entry.
        found = self.store.get_many(image_ids)
        items = [(image_id, found[image_id]) for image_id in image_ids if image_id in found]
        if items:
            self.index.add(*self.layout.index_rows(items))
        image_ids.clear()

    def add(self, image_id: int, value: bytes, digest: str = "") -> bool:
        """Durably store a new record (of a file with SHA-256 ``digest``) and index it. False when
        the id already exists."""
        added = self.store.add(image_id, value, digest)
        if added:
            self.sync()
        return added

    def delete(self, image_id: int) -> bool:
        deleted = self.store.delete(image_id)
        if deleted:
            self.sync()
        return deleted

    def count(self) -> int:
        return self.store.count()

    # -- snapshots -------------------------------------------------------------------------------------

    def snapshot(self, force: bool = False) -> bool:
        """Write the index to disk if it changed since the last snapshot. Returns True if written."""
        with self._sync_lock:
            generation = self.state.generation
            if not force and generation == self.state.snapshot_generation:
                return False
            body = self.index.serialize()
            binary = self.index.with_index(is_binary)
            # Read under the lock: a relayout() must not tag the old index with the new config.
            index_config = self.layout.config
            ntotal = self.index.count()
        header = json.dumps(
            {
                "store_uuid": self.store.uuid,
                "generation": generation,
                "binary": binary,
                "index_config": index_config,
                "ntotal": ntotal,
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        ).encode()
        write_atomic(self.snapshot_path, _MAGIC + _LEN.pack(len(header)) + header + body)
        self.state.snapshot_generation = generation
        self.state.last_snapshot_at = time.monotonic()
        self.store.trim_log(generation)
        return True


class Maintenance:
    """Background thread: picks up writes of other processes and snapshots the index."""

    def __init__(self, collection: Collection, sync_interval: float, snapshot_interval: float) -> None:
        self.collection = collection
        self.sync_interval = sync_interval
        self.snapshot_interval = snapshot_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        last_snapshot = time.monotonic()
        store = self.collection.store
        while not self._stop.is_set():
            # Returns early when another replica wrote (PostgreSQL notifies); else after the interval.
            store.wait_for_change(self.sync_interval, self._stop)
            if self._stop.is_set():
                break
            try:
                self.collection.sync()
                if time.monotonic() - last_snapshot >= self.snapshot_interval:
                    self.collection.snapshot()
                    last_snapshot = time.monotonic()
            except Exception:  # keep the thread alive; the next round retries
                log.exception("index maintenance failed")
