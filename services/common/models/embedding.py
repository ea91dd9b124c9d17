"""Feature services whose feature is one L2-normalised model embedding per image.

:class:`EmbeddingFeature` wires an :class:`~services.common.models.sessions.ImageEmbeddingSession` to the
kit: images are decoded and preprocessed on the request thread, the forward pass goes through a
:class:`~services.common.models.batching.MicroBatcher`; the store holds the raw embedding (float32) and
:meth:`EmbeddingFeature.to_index_space` maps raw rows to index rows (identity here, PCA whitening in
global_features), so any re-mapping is always applied to raw vectors, never twice. Searches accept
alpha query expansion (``aqe_n``, ``aqe_alpha``), computed for all query rows at once.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from services.common.features.collection import IndexLayout
from services.common.features.feature import Hit, VectorFeature
from services.common.features.vectors import alpha_query_expansion, stored_rows
from services.common.models.batching import MicroBatcher
from services.common.models.sessions import (
    ImageEmbeddingSession,
    describe_session,
    metadata_for,
)
from services.common.models.spec import ModelServiceSettings
from services.common.schemas import SearchParams


class EmbeddingSettings(ModelServiceSettings):
    decode_size: int = Field(
        448, ge=32, description="JPEGs are decoded at reduced size with the short side >= this"
    )
    mirrored_query: bool = Field(
        False, description="Queries also search with the mirrored image (best distance per image kept)"
    )
    aqe_n: int = Field(
        0,
        ge=0,
        le=100,
        description="alpha query expansion by default: how many top results are folded into the query "
        "before searching again (0 = off; a request's aqe_n overrides it)",
    )
    aqe_alpha: float = Field(
        3.0, ge=0, le=100, description="alpha query expansion by default: the similarity exponent"
    )
    index: Literal["faiss", "pgvector"] = Field(
        "faiss",
        description="where searches run: faiss (an in-memory index per replica) or pgvector (an HNSW "
        "index inside PostgreSQL shared by every replica; needs the postgres store)",
    )
    pgvector_ef_search: int = Field(
        100, ge=1, le=1000, description="pgvector: HNSW candidate list per search (recall vs latency)"
    )
    pgvector_build_memory_mb: int = Field(
        4096,
        ge=64,
        le=1_048_576,
        description="pgvector: the most maintenance_work_mem an HNSW (re)build may take (MB); the build "
        "asks for what the table needs (about 1.25 x (4 x dim + 1 KB) per row) up to this, and runs "
        "many times slower on disk past it",
    )
    pgvector_build_workers: int = Field(
        2, ge=0, le=64, description="pgvector: parallel workers of an HNSW build, besides the leader"
    )


class AQEParams(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    aqe_n: int | None = Field(
        None,
        ge=0,
        le=100,
        description="alpha query expansion: how many top results are "
        "folded into the query before searching again (0 = off; default: the service's AQE_N setting)",
    )
    aqe_alpha: float | None = Field(
        None,
        ge=0,
        le=100,
        description="alpha query expansion: a neighbour's weight is its cosine similarity to the "
        "query raised to this power (default: the service's AQE_ALPHA setting)",
    )


class EmbeddingFeature(VectorFeature):
    QueryParams: ClassVar[type[BaseModel]] = AQEParams
    settings: EmbeddingSettings
    session: ImageEmbeddingSession
    batcher: MicroBatcher[Any, np.ndarray]

    # -- model ------------------------------------------------------------------------------------------

    @abstractmethod
    def load_session(self) -> ImageEmbeddingSession:
        """Build the model (weights resolved by the settings' model spec: ``ModelSpec.resolve``)."""

    def load(self) -> None:
        import faiss

        # One FAISS thread per search (SEARCH_THREADS): requests already run concurrently, and
        # OpenMP teams competing with torch for the same cores slow every search down.
        faiss.omp_set_num_threads(self.settings.search_threads)
        # Sessions set torch's threads themselves (configure_torch): under runtime onnx the
        # serving process never imports torch.
        self.session = self.load_session()
        self.batcher = MicroBatcher(
            self._embed_batch,
            self.settings.max_batch,
            self.settings.batch_wait_ms / 1000,
            name=f"{self.name}-batcher",
        )

    def close(self) -> None:
        self.batcher.close()

    def _embed_batch(self, pixels: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.session.embed_images(np.stack(pixels)))

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Raw embeddings (n, dim); preprocessing here, forward passes shared with concurrent callers."""
        return np.stack(self.batcher.submit_many([self.session.preprocess(img) for img in images]))

    def decode_rgb(self, data: bytes) -> Image.Image:
        return self.decode(data, "RGB", draft_size=self.settings.decode_size).image

    # -- bulk import (ambience.importer): workers decode, this process runs the model -----

    batched_extract: ClassVar[bool] = True

    def prepare(self, data: bytes) -> Image.Image:
        return self.decode_rgb(data)

    def extract_batch(self, prepared: list[Image.Image]) -> list[bytes]:
        return [row.astype(np.float32).tobytes() for row in self.embed_images(prepared)]

    # -- identity ---------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {"feature": self.name, **metadata_for(self.session), "dtype": "float32"}

    def info(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "distance": "squared_l2",
            **describe_session(self.session, self.batcher),
        }

    # -- vectors ----------------------------------------------------------------------------------------

    def to_index_space(self, raw: np.ndarray) -> np.ndarray:
        """Raw embeddings (n, dim) -> index rows. Subclasses re-map (whitening); raw input only."""
        return np.ascontiguousarray(raw, dtype=np.float32)

    def raw_from_stored(self, stored: bytes) -> np.ndarray:
        return np.frombuffer(stored, dtype=np.float32, count=self.session.dim)

    def vector_from_stored(self, stored: bytes) -> np.ndarray:
        return self.to_index_space(self.raw_from_stored(stored)[None, :])[0]

    def index_layout(self) -> IndexLayout:
        """Raw embeddings in an exact L2 index (subclasses that re-map rows override it)."""
        dim = self.session.dim
        return IndexLayout.flat(dim, "l2", partial(stored_rows, dtype=np.float32, width=dim))

    def extract(self, data: bytes) -> bytes:
        return self.embed_images([self.decode_rgb(data)])[0].astype(np.float32).tobytes()

    def query_vectors(self, data: bytes, params: BaseModel) -> np.ndarray:
        image = self.decode_rgb(data)
        views = [image, ImageOps.mirror(image)] if self.settings.mirrored_query else [image]
        return self.to_index_space(self.embed_images(views))

    # -- search -----------------------------------------------------------------------------------------

    def search_by_image(self, data: bytes, search: SearchParams, params: BaseModel) -> list[Hit]:
        return self.search_vectors(self.expand(self.query_vectors(data, params), params), search)

    def search_by_stored(
        self, image_id: int, stored: bytes, search: SearchParams, params: BaseModel
    ) -> list[Hit]:
        queries = self.stored_query_vectors(stored, params)
        return self.search_vectors(self.expand(queries, params, exclude=image_id), search)

    def expand(self, queries: np.ndarray, params: BaseModel, exclude: int | None = None) -> np.ndarray:
        """alpha query expansion of every query row with its ``aqe_n`` nearest stored images other
        than ``exclude`` (a search by id: the image itself is already the query)."""
        assert isinstance(params, AQEParams)
        n = self.settings.aqe_n if params.aqe_n is None else params.aqe_n
        alpha = self.settings.aqe_alpha if params.aqe_alpha is None else params.aqe_alpha
        if n == 0 or self.collection.index.count() == 0:
            return queries
        _, ids = self.collection.index.search(queries, n + (exclude is not None))
        if exclude is not None:
            # Drop the image itself where it was found, else the farthest neighbour: n stay.
            ids = np.stack([row[row != exclude][:n] if (row == exclude).any() else row[:n] for row in ids])
        neighbours = self.index_vectors(ids)
        return alpha_query_expansion(queries, neighbours, ids >= 0, alpha)

    def index_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Exact index-space vectors of image ids (any shape; -1 and vanished ids give zero rows),
        read from the store so compressed indexes do not blur the expansion."""
        unique = [int(i) for i in np.unique(ids) if i >= 0]
        dim = self.collection.index.dim
        rows: dict[int, np.ndarray] = {}
        found = [(i, v) for i in unique if (v := self.collection.store.get(i)) is not None]
        if found:
            _, vectors = self.collection.layout.index_rows(found)
            rows = {i: vectors[n] for n, (i, _) in enumerate(found)}
        zero = np.zeros(dim, np.float32)
        flat = np.stack([rows.get(int(i), zero) for i in ids.ravel()]) if ids.size else np.zeros((0, dim))
        return flat.reshape(*ids.shape, dim).astype(np.float32)
