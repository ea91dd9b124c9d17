"""A feature service without HTTP: the feature object, its store and its index, opened the way the
service opens them.

``open_feature("phash", data_dir)`` is what the service's app does at start-up (load the models,
open the store with the feature's metadata, open the collection from its snapshot or by rebuilding,
bind the feature to it), for tools, benches and tests that compute, store and search features
in-process. ``new_feature`` only builds the (unloaded) feature object from the registry, for
``ambience import``, which writes to the store and leaves the index to the running service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from services.common.collection import Collection
from services.common.feature import FeatureService
from services.common.pgvector import new_collection
from services.common.storage import Store, open_store

SNAPSHOT_FILE = "index.snapshot"


class UnknownFeatureError(ValueError):
    """The name is not a registered service that keeps a FeatureStore."""


def new_feature(name: str, data_dir: Path | None = None, **settings: Any) -> FeatureService:
    """The registered service's feature object, not loaded, with settings from the environment;
    ``data_dir`` and keyword arguments override them."""
    from services.registry import SERVICES

    info = SERVICES.get(name)
    if info is None:
        raise UnknownFeatureError(f"unknown service {name!r}; known: {', '.join(sorted(SERVICES))}")
    feature_cls = info.feature_class()
    if feature_cls is None:
        raise UnknownFeatureError(
            f"service {name!r} keeps no FeatureStore (its descriptor names no feature class)"
        )
    if data_dir is not None:
        settings["data_dir"] = data_dir
    return feature_cls(info.settings_class()(**settings))


@dataclass
class OpenFeature:
    """A loaded feature bound to its open collection. Close it (or use ``with``) to snapshot the
    index and release the store."""

    feature: FeatureService
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


def open_feature(feature: str | FeatureService, data_dir: Path | None = None, **settings: Any) -> OpenFeature:
    """Open a feature service headless: a registered name (settings from the environment,
    ``data_dir`` and keyword arguments override them) or a built feature object."""
    if isinstance(feature, str):
        feature = new_feature(feature, data_dir, **settings)
    elif data_dir is not None or settings:
        raise TypeError("data_dir and settings apply to a service name, not to a built feature")
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
