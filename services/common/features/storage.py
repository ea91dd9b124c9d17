"""Where a feature service keeps its truth: the store interface and the choice between its two
implementations.

- ``lmdb`` (default): :class:`services.common.features.store.FeatureStore`, a file in the service's data dir.
  One machine; several processes on it may share the folder.
- ``postgres``: :class:`services.common.postgres.store.PostgresFeatureStore`, tables in the PostgreSQL
  server of ``AMBIENCE_PG_*`` (the embedded one when no DSN is set). Any number of replicas of the
  service, on any hosts, pointed at one server serve the same collection; each keeps its own index
  and snapshots in its own data dir.

Chosen per service with ``AMBIENCE_<SERVICE>_STORE``. Everything above the store (collection,
index, snapshots, importer) sees only :class:`Store`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from services.common.descriptor import load_attr

StoreKind = Literal["lmdb", "postgres"]


class Store(Protocol):
    """Durable image id -> feature bytes, with a metadata record and a change log."""

    uuid: str
    metadata: dict[str, Any]

    def add(self, image_id: int, value: bytes, digest: str = "") -> bool: ...
    def add_many(
        self, items: Iterable[tuple[int, bytes]], digests: dict[int, str] | None = None
    ) -> list[bool]: ...
    def digest(self, image_id: int) -> str | None: ...
    def delete(self, image_id: int) -> bool: ...
    def trim_log(self, upto_generation: int) -> None: ...
    @property
    def generation(self) -> int: ...
    def get(self, image_id: int) -> bytes | None: ...
    def get_many(self, image_ids: list[int]) -> dict[int, bytes]: ...
    def __contains__(self, image_id: int) -> bool: ...
    def count(self) -> int: ...
    def snapshot_items(self, batch: int = 4096) -> tuple[int, Iterator[list[tuple[int, bytes]]]]: ...
    def ids(self) -> list[int]: ...
    def changes_since(self, generation: int) -> tuple[int, list[tuple[int, bytes, int]]] | None: ...
    def disk_bytes(self) -> int: ...
    def wait_for_change(self, timeout: float, stop: threading.Event) -> None: ...
    def close(self) -> None: ...


def replica_name(data_dir: Path) -> str:
    """Stable per process folder: the host and the data dir (two replicas never share both)."""
    return f"{socket.gethostname()}:{data_dir.resolve()}"


#: The implementation of each store kind, as ``"module:function(service, data_dir, metadata)"``:
#: loaded when a service chooses the kind, so a service that keeps its features in LMDB never
#: imports PostgreSQL's driver (and this engine depends on no implementation built on it).
STORE_OPENERS: dict[str, str] = {
    "lmdb": "services.common.features.store:open_lmdb_store",
    "postgres": "services.common.postgres.store:open_postgres_store",
}


def open_store(kind: StoreKind, service: str, data_dir: Path, metadata: dict[str, Any]) -> Store:
    """The service's store of ``kind``; refuses (StoreMismatchError) data built otherwise."""
    opener = STORE_OPENERS.get(kind)
    if opener is None:
        raise ValueError(f"unknown store {kind!r}: use {' or '.join(STORE_OPENERS)}")
    return load_attr(opener)(service, data_dir, metadata)
