"""An 8x8 grey thumbnail compared by L2 distance: the smallest useful feature."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from pydantic import BaseModel

from ambience_support.toy_service.descriptor import DESCRIPTOR
from services.common.features.collection import IndexLayout
from services.common.features.feature import VectorFeature
from services.common.features.vectors import stored_rows
from services.common.settings import ServiceSettings

SIDE = 8
DIM = SIDE * SIDE


class ToyThumbnailSettings(ServiceSettings):
    service_descriptor = DESCRIPTOR


class ThumbnailFeature(VectorFeature):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]

    def metadata(self) -> dict[str, Any]:
        return {"feature": DESCRIPTOR.name, "dim": DIM}

    def index_layout(self) -> IndexLayout:
        return IndexLayout.flat(DIM, "l2", partial(stored_rows, dtype=np.float32, width=DIM))

    def _thumbnail(self, data: bytes) -> np.ndarray:
        image = self.decode(data, "L").image.resize((SIDE, SIDE))
        return np.asarray(image, dtype=np.float32).ravel() / 255.0

    def extract(self, data: bytes) -> bytes:
        return self._thumbnail(data).tobytes()

    def vector_from_stored(self, stored: bytes) -> np.ndarray:
        return np.frombuffer(stored, dtype=np.float32, count=DIM)

    def query_vectors(self, data: bytes, params: BaseModel) -> np.ndarray:
        return self._thumbnail(data)[None, :]
