"""Wires the colour histogram to the service kit."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field

from services.color.descriptor import DESCRIPTOR
from services.color.histogram import DIM, histogram
from services.common.features.app import create_app
from services.common.features.collection import IndexLayout
from services.common.features.feature import VectorFeature
from services.common.features.vectors import stored_rows
from services.common.settings import ServiceSettings


class ColorSettings(ServiceSettings):
    service_descriptor = DESCRIPTOR

    decode_size: int = Field(
        256, ge=32, description="JPEGs are decoded at reduced size with the short side >= this"
    )


class ColorFeature(VectorFeature):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    settings: ColorSettings

    def metadata(self) -> dict[str, Any]:
        return {"feature": "color", "algorithm": "rgb-hist-8x8x8-sum1e7", "dim": DIM, "dtype": "float32"}

    def info(self) -> dict[str, Any]:
        return {"feature": "color", "distance": "l1", "dim": DIM}

    def index_layout(self) -> IndexLayout:
        return IndexLayout.flat(DIM, "l1", partial(stored_rows, dtype=np.float32, width=DIM))

    def _histogram(self, data: bytes) -> np.ndarray:
        return histogram(self.decode(data, "RGB", draft_size=self.settings.decode_size).image)

    def extract(self, data: bytes) -> bytes:
        return self._histogram(data).tobytes()

    def vector_from_stored(self, stored: bytes) -> np.ndarray:
        return np.frombuffer(stored, dtype=np.float32, count=DIM)

    def query_vectors(self, data: bytes, params: BaseModel) -> np.ndarray:
        return self._histogram(data)[None, :]


def build_app(settings: ColorSettings | None = None) -> FastAPI:
    return create_app(ColorFeature(settings or ColorSettings()))
