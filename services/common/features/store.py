"""LMDB feature store: the source of truth of every feature service.

Layout (named LMDB databases in one environment):

- ``features``: key = image_id as 8-byte big-endian unsigned, value = the feature's raw bytes.
- ``meta``: the metadata record (schema, feature, model, dimension), the store's uuid and its
  write generation.
- ``digests``: key = image_id, value = the SHA-256 (hex) of the uploaded file, when known.
- ``log``: key = generation (8-byte BE), value = op (``A`` add / ``D`` delete) + image_id. Every
  write appends here in the same transaction, so an index built from an older generation can be
  brought up to date by replaying the log instead of re-reading the whole store. The log is
  trimmed once an index snapshot covers it.

Every write commits durably (LMDB's default fsync on commit): once a call returns, the record
survives a crash. The map grows on demand, so there is no fixed size cap. Several processes may
write (e.g. ``ambience import`` while the service runs): LMDB serialises their transactions.
"""

from __future__ import annotations

import json
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from services.common.errors import StoreMismatchError
from services.common.features.locks import RWLock

SCHEMA_VERSION = 1
_U64 = struct.Struct(">Q")
_META_RECORD = b"metadata"
_META_UUID = b"uuid"
_META_GENERATION = b"generation"
_META_LOG_FLOOR = b"log_floor"  # the log holds every change with generation > log_floor
OP_ADD = b"A"
OP_DELETE = b"D"

T = TypeVar("T")


def check_metadata(stored: dict[str, Any], wanted: dict[str, Any], where: str, fix: str) -> None:
    """Refuse data built with another configuration, naming every difference and the way out."""
    diffs = [
        f"{key}: stored {stored.get(key)!r}, configured {value!r}"
        for key, value in wanted.items()
        if stored.get(key) != value
    ]
    if diffs:
        raise StoreMismatchError(
            f"{where} was built with a different configuration (" + "; ".join(diffs) + f"). {fix}"
        )


def encode_id(image_id: int) -> bytes:
    return _U64.pack(image_id)


def decode_id(key: bytes) -> int:
    return _U64.unpack(key)[0]


class FeatureStore:
    """Durable id -> bytes mapping with a change log. Thread-safe."""

    def __init__(self, path: Path, metadata: dict[str, Any], *, initial_map_size: int = 64 << 20) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # set_mapsize needs every transaction of this process closed. A growing writer blocks new
        # readers (else busy readers starve it); nested reads of one thread still pass.
        self._resize_lock = RWLock(prefer_writers=True)
        self._write_lock = threading.Lock()
        self._env = lmdb.open(
            str(self.path / "store.lmdb"),
            map_size=initial_map_size,
            max_dbs=4,
            subdir=True,
            readahead=False,
            max_readers=512,
        )
        self._features = self._env.open_db(b"features")
        self._meta = self._env.open_db(b"meta")
        self._log = self._env.open_db(b"log")
        # SHA-256 of the uploaded file per id, when the caller gave one: lets a client tell "this id
        # holds my image" from "this id holds another image" on a conflict.
        self._digests = self._env.open_db(b"digests")
        self.metadata = self._check_metadata(metadata)
        self.uuid = self._read_meta(_META_UUID).decode()

    # -- metadata -------------------------------------------------------------------------------

    def _check_metadata(self, wanted: dict[str, Any]) -> dict[str, Any]:
        wanted = {"schema_version": SCHEMA_VERSION, **wanted}

        def check(txn: lmdb.Transaction) -> dict[str, Any]:
            raw = txn.get(_META_RECORD, db=self._meta)
            if raw is None:
                txn.put(_META_RECORD, json.dumps(wanted, sort_keys=True).encode(), db=self._meta)
                txn.put(_META_UUID, uuid.uuid4().hex.encode(), db=self._meta)
                txn.put(_META_GENERATION, encode_id(0), db=self._meta)
                txn.put(_META_LOG_FLOOR, encode_id(0), db=self._meta)
                return wanted
            stored = json.loads(raw)
            check_metadata(
                stored,
                wanted,
                f"data in {self.path}",
                "Point the service at another data dir, or restore the settings it was built with.",
            )
            return stored

        return self._write(check)

    def _read_meta(self, key: bytes) -> bytes:
        with self._read_txn() as txn:
            value = txn.get(key, db=self._meta)
        assert value is not None
        return bytes(value)

    # -- transactions -----------------------------------------------------------------------------

    def _read_txn(self) -> _ReadTxn:
        return _ReadTxn(self)

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one durable write transaction, growing the map when it is full."""
        with self._write_lock:
            while True:
                try:
                    with self._resize_lock.read(), self._env.begin(write=True) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    self._grow()
                except lmdb.MapResizedError:
                    self._adopt_foreign_size()

    def _grow(self) -> None:
        with self._resize_lock.write():
            self._env.set_mapsize(self._env.info()["map_size"] * 2)

    def _adopt_foreign_size(self) -> None:
        # Another process grew the map; 0 means "use the size recorded in the file".
        with self._resize_lock.write():
            self._env.set_mapsize(0)

    @staticmethod
    def _bump(txn: lmdb.Transaction, meta_db: Any, log_db: Any, op: bytes, image_id: int) -> int:
        gen = decode_id(txn.get(_META_GENERATION, db=meta_db)) + 1
        txn.put(_META_GENERATION, encode_id(gen), db=meta_db)
        txn.put(encode_id(gen), op + encode_id(image_id), db=log_db, append=True)
        return gen

    # -- writes -----------------------------------------------------------------------------------

    def add(self, image_id: int, value: bytes, digest: str = "") -> bool:
        """Store ``value`` (of a file with SHA-256 ``digest``, when known) under a new id. False
        (and nothing written) when the id exists."""
        return self.add_many([(image_id, value)], {image_id: digest} if digest else None)[0]

    def add_many(
        self, items: Iterable[tuple[int, bytes]], digests: dict[int, str] | None = None
    ) -> list[bool]:
        """Add several records in one durable transaction; existing ids are left untouched."""
        items = list(items)

        def put(txn: lmdb.Transaction) -> list[bool]:
            added = []
            for image_id, value in items:
                ok = txn.put(encode_id(image_id), value, db=self._features, overwrite=False)
                if ok:
                    self._bump(txn, self._meta, self._log, OP_ADD, image_id)
                    if digests and digests.get(image_id):
                        txn.put(encode_id(image_id), digests[image_id].encode(), db=self._digests)
                added.append(bool(ok))
            return added

        return self._write(put)

    def digest(self, image_id: int) -> str | None:
        """The SHA-256 recorded with the image stored under ``image_id`` (None: none recorded)."""
        with self._read_txn() as txn:
            value = txn.get(encode_id(image_id), db=self._digests)
            return None if value is None else bytes(value).decode()

    def delete(self, image_id: int) -> bool:
        def remove(txn: lmdb.Transaction) -> bool:
            if not txn.delete(encode_id(image_id), db=self._features):
                return False
            txn.delete(encode_id(image_id), db=self._digests)
            self._bump(txn, self._meta, self._log, OP_DELETE, image_id)
            return True

        return self._write(remove)

    def trim_log(self, upto_generation: int) -> None:
        """Forget log entries up to and including ``upto_generation`` (a snapshot covers them)."""

        def trim(txn: lmdb.Transaction) -> None:
            floor = decode_id(txn.get(_META_LOG_FLOOR, db=self._meta))
            if upto_generation <= floor:
                return
            cursor = txn.cursor(db=self._log)
            if cursor.first():
                while cursor.key() and decode_id(cursor.key()) <= upto_generation:
                    if not cursor.delete():
                        break
            txn.put(_META_LOG_FLOOR, encode_id(upto_generation), db=self._meta)

        self._write(trim)

    # -- reads ------------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        return decode_id(self._read_meta(_META_GENERATION))

    def get(self, image_id: int) -> bytes | None:
        with self._read_txn() as txn:
            value = txn.get(encode_id(image_id), db=self._features)
            return None if value is None else bytes(value)

    def get_many(self, image_ids: list[int]) -> dict[int, bytes]:
        """The records of ``image_ids`` that exist, read in one transaction."""
        with self._read_txn() as txn:
            found = {i: txn.get(encode_id(i), db=self._features) for i in image_ids}
            return {i: bytes(v) for i, v in found.items() if v is not None}

    def __contains__(self, image_id: int) -> bool:
        return self.get(image_id) is not None

    def count(self) -> int:
        with self._read_txn() as txn:
            return int(txn.stat(self._features)["entries"])

    def snapshot_items(self, batch: int = 4096) -> tuple[int, Iterator[list[tuple[int, bytes]]]]:
        """(generation, batches of (id, value)) read in one consistent transaction."""
        txn_ctx = self._read_txn()
        txn = txn_ctx.__enter__()
        generation = decode_id(txn.get(_META_GENERATION, db=self._meta))

        def batches() -> Iterator[list[tuple[int, bytes]]]:
            try:
                chunk: list[tuple[int, bytes]] = []
                for key, value in txn.cursor(db=self._features):
                    chunk.append((decode_id(key), bytes(value)))
                    if len(chunk) >= batch:
                        yield chunk
                        chunk = []
                if chunk:
                    yield chunk
            finally:
                txn_ctx.__exit__(None, None, None)

        return generation, batches()

    def ids(self) -> list[int]:
        with self._read_txn() as txn:
            return [decode_id(k) for k in txn.cursor(db=self._features).iternext(keys=True, values=False)]

    def changes_since(self, generation: int) -> tuple[int, list[tuple[int, bytes, int]]] | None:
        """(current generation, [(generation, op, image_id), ...]) after ``generation``.

        None when the log no longer reaches back that far (the caller must rebuild).
        """
        with self._read_txn() as txn:
            current = decode_id(txn.get(_META_GENERATION, db=self._meta))
            floor = decode_id(txn.get(_META_LOG_FLOOR, db=self._meta))
            if generation < floor or generation > current:
                return None
            changes = []
            cursor = txn.cursor(db=self._log)
            if cursor.set_range(encode_id(generation + 1)):
                for key, value in cursor:
                    changes.append((decode_id(key), bytes(value[:1]), decode_id(value[1:])))
            return current, changes

    def wait_for_change(self, timeout: float, stop: threading.Event) -> None:
        """Wait ``timeout`` seconds (or until ``stop``): LMDB has no change notification, so other
        processes' writes are found by polling."""
        stop.wait(timeout)

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.path / "store.lmdb").iterdir())

    def close(self) -> None:
        with self._resize_lock.write():
            self._env.close()


class _ReadTxn:
    """A read transaction that also holds the resize lock (shared) while open."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._lock_ctx = store._resize_lock.read()
        self._txn: lmdb.Transaction | None = None

    def __enter__(self) -> lmdb.Transaction:
        self._lock_ctx.__enter__()
        while True:
            try:
                self._txn = self._store._env.begin()
                return self._txn
            except lmdb.MapResizedError:
                self._lock_ctx.__exit__(None, None, None)
                self._store._adopt_foreign_size()
                self._lock_ctx = self._store._resize_lock.read()
                self._lock_ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._txn is not None:
                self._txn.abort()
        finally:
            self._lock_ctx.__exit__(None, None, None)


def open_lmdb_store(service: str, data_dir: Path, metadata: dict[str, Any]) -> FeatureStore:
    """``AMBIENCE_<SERVICE>_STORE=lmdb`` (services.common.features.storage.open_store)."""
    return FeatureStore(data_dir, metadata)
