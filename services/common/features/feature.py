"""What a feature service plugs into the kit.

A service subclasses :class:`FeatureService` (or :class:`VectorFeature` for the common case of
one vector per image searched by nearest neighbours) and hands an instance to
:func:`services.common.features.app.create_app`. The subclass holds the algorithm's wiring only; the
algorithm itself lives in plain modules of the service package.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import faiss
import numpy as np
from pydantic import BaseModel

from services.common.features.collection import Collection, IndexLayout, Maintenance
from services.common.features.opening import OpenFeature, open_feature_object
from services.common.features.vectors import within_threshold
from services.common.schemas import ID_MAX, NoParams, SearchParams
from services.common.service import ServiceBase

Hit = dict[str, Any]

log = logging.getLogger(__name__)


class FeatureService(ServiceBase, ABC):
    #: Routes: /calculate_{store_route}, /delete_{store_route}, /{search_route}_get_similar_images_by_*
    store_route: ClassVar[str]
    search_route: ClassVar[str]
    #: Extra query parameters (form fields / JSON keys) the service's searches accept.
    QueryParams: ClassVar[type[BaseModel]] = NoParams
    #: Exclusive upper bound of accepted image ids.
    max_image_id: ClassVar[int] = ID_MAX
    #: The schema of one search result (for the OpenAPI docs).
    ResultModel: ClassVar[type[BaseModel] | None] = None
    #: Bulk import (``ambience import``, ambience.importer). False: worker processes run
    #: ``extract`` on file bytes (cheap features). True: workers only run ``prepare`` (decoding and
    #: preprocessing) and the importing process runs ``extract_batch`` on batches of prepared
    #: inputs with its one loaded model (model services).
    batched_extract: ClassVar[bool] = False
    #: How many prepared inputs one ``extract_batch`` call gets during a bulk import.
    import_batch_size: ClassVar[int] = 32

    # -- lifecycle -------------------------------------------------------------------------------

    def load(self) -> None:
        """Load models etc. Called once before the store opens (metadata may depend on it)."""

    def bind(self, collection: Collection) -> None:
        """Called once the collection is open (e.g. to restore trained state)."""
        self.collection = collection

    def close(self) -> None:
        """Release resources at shutdown."""

    def app_description(self) -> str:
        return self.description or f"The {self.name} feature service of ambience."

    def start(self) -> None:
        """Open the feature as the service runs it: models, store, index, and the maintenance
        thread that picks up other processes' writes and snapshots the index."""
        faiss.omp_set_num_threads(self.settings.search_threads)
        self._opened: OpenFeature = open_feature_object(self)
        collection = self._opened.collection
        self._maintenance = Maintenance(
            collection, self.settings.sync_interval_s, self.settings.snapshot_interval_s
        )
        self._maintenance.start()
        self.started_at = time.time()
        log.info(
            "%s ready: %d images, index from %s", self.name, collection.count(), collection.state.loaded_from
        )

    def stop(self) -> None:
        self._maintenance.stop()
        self._opened.close()

    # -- /health, /stats, /metrics -----------------------------------------------------------------

    def _open_collection(self) -> Collection | None:
        return getattr(self, "collection", None)

    def health(self) -> dict[str, Any]:
        out = super().health()
        collection = self._open_collection()
        if collection is not None:
            out["count"] = collection.count()
        return out

    def stats(self) -> dict[str, Any]:
        out = self.health()
        collection = self._open_collection()
        if collection is not None:
            st = collection.state
            out["index"] = {
                "type": collection.index.type_name(),
                "entries": collection.index.count(),
                "generation": st.generation,
                "loaded_from": st.loaded_from,
                "replayed": st.replayed,
                "snapshot_generation": st.snapshot_generation,
            }
            out["store"] = {
                "generation": collection.store.generation,
                "disk_bytes": collection.store.disk_bytes(),
                "metadata": collection.store.metadata,
            }
            out["uptime_s"] = round(time.time() - (self.started_at or time.time()), 1)
        return out

    def refresh_metrics(self) -> None:
        collection = self._open_collection()
        if collection is not None:
            self.metrics.items.set(collection.count())

    # -- identity ---------------------------------------------------------------------------------

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """Recorded in the store; a mismatch at start-up refuses to open the data."""

    def info(self) -> dict[str, Any]:
        """Extra /stats and /health fields (model, weights source)."""
        return {}

    # -- index layout ---------------------------------------------------------------------------

    @abstractmethod
    def index_layout(self) -> IndexLayout:
        """How stored records become index rows (called after ``load``; a feature that retrains
        hands the collection a new one through ``Collection.relayout``)."""

    # -- work -------------------------------------------------------------------------------------

    @abstractmethod
    def extract(self, data: bytes) -> bytes:
        """Image file bytes -> the bytes stored for it. Raises ImageError on bad input."""

    def prepare(self, data: bytes) -> Any:
        """Bulk import of a ``batched_extract`` service: image file bytes -> model input.

        Runs in worker processes on a feature object built from the settings *without* ``load()``,
        so keep it to decoding and preprocessing the settings determine; the result must pickle
        (a numpy array, a tensor). Raises ImageError on bad input, like ``extract``.
        """
        return data

    def extract_batch(self, prepared: list[Any]) -> list[bytes]:
        """Bulk import: the stored bytes for each ``prepare`` result, in order.

        Must give what ``extract`` gives for the same file (up to float tolerance of batched
        inference). The default calls ``extract`` one by one, which is right when ``prepare`` is
        the identity.
        """
        return [self.extract(item) for item in prepared]

    @abstractmethod
    def search_by_image(self, data: bytes, search: SearchParams, params: BaseModel) -> list[Hit]: ...

    @abstractmethod
    def search_by_stored(
        self, image_id: int, stored: bytes, search: SearchParams, params: BaseModel
    ) -> list[Hit]: ...


class VectorFeature(FeatureService):
    """One vector per image, FAISS id = image_id; queries may carry several vectors (e.g. the
    mirrored image) whose results are merged by best distance per image."""

    #: Distances are reported as int (Hamming) or float.
    integer_distances: ClassVar[bool] = False

    @abstractmethod
    def vector_from_stored(self, stored: bytes) -> np.ndarray:
        """The index row (1-D) for stored bytes."""

    @abstractmethod
    def query_vectors(self, data: bytes, params: BaseModel) -> np.ndarray:
        """Image file bytes -> query rows (2-D)."""

    def mirrored_from_stored(self, stored: bytes) -> np.ndarray | None:
        """The index row of the stored image's mirror, where the feature can tell it from the
        stored value (phash); None where it cannot."""
        return None

    def stored_query_vectors(self, stored: bytes, params: BaseModel) -> np.ndarray:
        """Query rows for a by-id search; by default the stored vector alone."""
        return self.vector_from_stored(stored)[None, :]

    def search_by_image(self, data: bytes, search: SearchParams, params: BaseModel) -> list[Hit]:
        return self.search_vectors(self.query_vectors(data, params), search)

    def search_by_stored(
        self, image_id: int, stored: bytes, search: SearchParams, params: BaseModel
    ) -> list[Hit]:
        return self.search_vectors(self.stored_query_vectors(stored, params), search)

    def search_vectors(self, queries: np.ndarray, search: SearchParams) -> list[Hit]:
        """Nearest images to any of ``queries`` (best distance per image), sorted best first.

        A threshold search is the ``max_k`` nearest filtered by distance: its reply and memory stay
        bounded however large the threshold or the collection (best first, at most ``max_k``).
        """
        limit = search.k if search.k is not None else self.settings.max_k
        distances, ids = self.collection.index.search(queries, limit)
        keep = ids >= 0  # FAISS pads missing neighbours with -1
        if search.distance_threshold is not None:
            # Inclusive, at float32 precision whichever arithmetic the index used.
            keep &= distances <= within_threshold(search.distance_threshold)
        best: dict[int, float] = {}
        for distance, faiss_id in zip(distances[keep], ids[keep], strict=True):
            image_id = int(faiss_id)
            if distance < best.get(image_id, np.inf):
                best[image_id] = float(distance)
        ranked = sorted(best.items(), key=lambda item: (item[1], item[0]))[:limit]
        cast = int if self.integer_distances else float
        return [{"image_id": image_id, "distance": cast(distance)} for image_id, distance in ranked]
