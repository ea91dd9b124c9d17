"""A feature opened without HTTP: the feature object, its store and its index, opened the way the
service opens them at start-up (load the models, open the store with the feature's metadata, open
the collection from its snapshot or by rebuilding, bind the feature to it).

The kit opens a feature object it is given; opening one by its registered name
(``services.registry.open_feature("phash", data_dir)``) is the registry's, which sits above the kit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from services.common.descriptor import load_attr
from services.common.errors import StartupError
from services.common.features.collection import Collection, IndexLayout
from services.common.features.storage import Store, open_store

SNAPSHOT_FILE = "index.snapshot"
#: The collection of ``AMBIENCE_<SERVICE>_INDEX=pgvector``, loaded only when chosen.
PGVECTOR_COLLECTION = "services.common.postgres.vectors:PgVectorCollection"


class Openable(Protocol):
    """What opening needs of a feature (:class:`services.common.features.feature.FeatureService`)."""

    name: str
    settings: Any

    def load(self) -> None: ...
    def metadata(self) -> dict[str, Any]: ...
    def index_layout(self) -> IndexLayout: ...
    def bind(self, collection: Collection) -> None: ...
    def extract(self, data: bytes) -> bytes: ...
    def close(self) -> None: ...


def new_collection(store: Store, layout: IndexLayout, snapshot_path: Path, settings: Any) -> Collection:
    """The collection a service's settings ask for: FAISS in memory (default) or pgvector (imported
    only then: PostgreSQL is never loaded by a service that does not choose it)."""
    if getattr(settings, "index", "faiss") != "pgvector":
        return Collection(store, layout, snapshot_path)
    prefix = settings.env_prefix()
    if getattr(settings, "index_factory", ""):
        raise StartupError(
            f"{prefix}INDEX=pgvector searches with HNSW inside PostgreSQL: "
            f"unset {prefix}INDEX_FACTORY (a FAISS layout)"
        )
    # by name, as the store kinds: the engine names no implementation built on it
    collection_class = load_attr(PGVECTOR_COLLECTION)
    return collection_class(  # type: ignore[no-any-return]
        store,
        layout,
        snapshot_path,
        settings.service_name,
        settings.pgvector_ef_search,
        settings.pgvector_build_memory_mb,
        settings.pgvector_build_workers,
    )


@dataclass
class OpenFeature:
    """A loaded feature bound to its open collection. Close it (or use ``with``) to snapshot the
    index and release the store."""

    feature: Openable
    store: Store
    collection: Collection

    def add(self, image_id: int, data: bytes) -> bool:
        """Extract the feature of image file bytes and store it. False when the id exists."""
        return self.collection.add(image_id, self.feature.extract(data))

    def close(self, snapshot: bool = True) -> None:
        if snapshot:
            self.collection.snapshot()
        self.feature.close()
        self.store.close()

    def __enter__(self) -> OpenFeature:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_feature_object(feature: Openable) -> OpenFeature:
    """Open a built feature object as its service does at start-up."""
    feature.load()
    data_dir = feature.settings.resolved_data_dir()
    # The postgres store keeps nothing there, but snapshots and trained state do.
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(feature.settings.store, feature.name, data_dir, feature.metadata())
    try:
        collection = new_collection(store, feature.index_layout(), data_dir / SNAPSHOT_FILE, feature.settings)
        collection.open()
        feature.bind(collection)
    except BaseException:
        store.close()
        raise
    return OpenFeature(feature, store, collection)
