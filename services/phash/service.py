"""Wires the phash algorithm to the service kit."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field

from services.common.features.app import create_app
from services.common.features.collection import IndexLayout
from services.common.features.feature import VectorFeature
from services.common.features.vectors import stored_rows
from services.common.settings import ServiceSettings
from services.phash.descriptor import DESCRIPTOR
from services.phash.hashing import HASH_BITS, HASH_BYTES, mirror_hash, phash_variants


class PhashSettings(ServiceSettings):
    service_descriptor = DESCRIPTOR

    decode_size: int = Field(
        256, ge=96, description="JPEGs are decoded at reduced size with the short side >= this"
    )
    mirrored_query: bool = Field(True, description="Queries also match the mirrored image")


class PhashParams(BaseModel):
    rotations: bool = Field(False, description="Also match 90/180/270-degree rotations of the query")


class PhashFeature(VectorFeature):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    QueryParams = PhashParams
    integer_distances = True
    settings: PhashSettings

    def metadata(self) -> dict[str, Any]:
        return {"feature": "phash", "algorithm": "dct-96-24-median", "bits": HASH_BITS}

    def info(self) -> dict[str, Any]:
        return {"feature": "phash", "distance": "hamming", "bits": HASH_BITS}

    def index_layout(self) -> IndexLayout:
        return IndexLayout.flat(HASH_BITS, "hamming", partial(stored_rows, dtype=np.uint8, width=HASH_BYTES))

    def extract(self, data: bytes) -> bytes:
        """The hash and the hash of the mirrored image (from the same DCT block, by sign flips):
        a by-id search and the pairs of a rebuild match mirrored copies exactly, with no pixels.
        Records of one hash (stored before) still work: their mirror is derived from the hash."""
        gray = self.decode(data, "L", draft_size=self.settings.decode_size).image
        return phash_variants(gray, mirror=True).tobytes()

    def vector_from_stored(self, stored: bytes) -> np.ndarray:
        return np.frombuffer(stored, dtype=np.uint8, count=HASH_BYTES)

    def mirrored_from_stored(self, stored: bytes) -> np.ndarray:
        if len(stored) >= 2 * HASH_BYTES:
            return np.frombuffer(stored, dtype=np.uint8, count=HASH_BYTES, offset=HASH_BYTES)
        return mirror_hash(self.vector_from_stored(stored))

    def stored_query_vectors(self, stored: bytes, params: BaseModel) -> np.ndarray:
        """A by-id search matches mirrored copies too, as a by-image one does: the stored mirror
        hash joins the query."""
        row = self.vector_from_stored(stored)
        if not self.settings.mirrored_query:
            return row[None, :]
        return np.stack([row, self.mirrored_from_stored(stored)])

    def query_vectors(self, data: bytes, params: BaseModel) -> np.ndarray:
        assert isinstance(params, PhashParams)
        gray = self.decode(data, "L", draft_size=self.settings.decode_size).image
        return phash_variants(gray, mirror=self.settings.mirrored_query, rotations=params.rotations)


def build_app(settings: PhashSettings | None = None) -> FastAPI:
    return create_app(PhashFeature(settings or PhashSettings()))
