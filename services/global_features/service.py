"""Wires timm global vectors, PCA whitening and the optional compressed index to the service kit.

The store holds raw (model) vectors. What the index holds depends on the trained state (PCA
whitening and, with ``index_factory``, a trained compressed FAISS layout), persisted next to the
store and part of the index layout's config (:meth:`GlobalFeature.layout_for`), so snapshots built
under another state are discarded. Training re-reads the raw vectors and rebuilds the whole index;
whitening is only ever applied to raw vectors.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field

from services.common.errors import StartupError
from services.common.features.app import create_app
from services.common.features.collection import IndexLayout
from services.common.features.index import AnyIndex, new_flat_index, write_atomic
from services.common.features.training import Phase, Retraining, TrainingError, add_training_route
from services.common.features.vectors import stored_rows
from services.common.models.embedding import EmbeddingFeature
from services.common.models.inference import resolve_runtime
from services.common.models.onnx_tower import OnnxImageSession, device_kind
from services.common.models.sessions import ImageEmbeddingSession, configure_torch, select_device
from services.global_features.descriptor import DESCRIPTOR, MODEL
from services.global_features.settings import GlobalFeaturesSettings
from services.global_features.whitening import SELF_CHECK_FIGURE, PCAWhitening, train_checked_whitening

log = logging.getLogger(__name__)
STATE_FILE = "trained_state.npz"
#: Runtime onnx: the builder its export child runs, and the settings that choose the exported graph.
EXPORT_BUILDER = "services.global_features.model:export_tower"
EXPORT_SETTINGS = ("model", "weights", "pooling")


class TrainBody(BaseModel):
    whitening: bool = Field(True, description="Learn PCA whitening (false: index raw vectors)")
    dim: int | None = Field(None, ge=1, description="Whitened dimension (default: setting pca_dim)")
    power: float | None = Field(None, ge=0, le=1, description="Whitening power (default: setting pca_power)")
    force: bool = Field(
        False,
        description="Switch to the whitening even when the self-check says it lowers search quality",
    )


@dataclass(frozen=True)
class TrainedState:
    """What training produced: whitening and a trained, empty compressed index (or neither)."""

    whitening: PCAWhitening | None = None
    template: bytes | None = None  # serialised FAISS index, trained and empty
    factory: str = ""

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw vectors (n, dim) -> index rows: whitened, or as they are."""
        if self.whitening is None:
            return np.ascontiguousarray(raw, dtype=np.float32)
        return self.whitening.apply(raw)

    def digest(self) -> str:
        h = hashlib.sha256((self.whitening.digest() if self.whitening else "raw").encode())
        h.update(self.template or b"flat")
        return h.hexdigest()[:16]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {"factory": np.array(self.factory)}
        if self.whitening is not None:
            arrays["whitening"] = np.frombuffer(self.whitening.to_bytes(), np.uint8)
        if self.template is not None:
            arrays["template"] = np.frombuffer(self.template, np.uint8)
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedState:
        with np.load(io.BytesIO(data)) as z:
            whitening = PCAWhitening.from_bytes(z["whitening"].tobytes()) if "whitening" in z else None
            template = z["template"].tobytes() if "template" in z else None
            return cls(whitening, template, str(z["factory"]))


def make_compressed_index(dim: int, factory: str) -> AnyIndex:
    """An empty FAISS index from a factory string, able to take arbitrary ids and range removals."""
    if any(kind in factory.upper() for kind in ("HNSW", "NSG")):
        raise StartupError(
            f"index_factory {factory!r}: graph indexes cannot remove vectors; use IVF/PQ layouts"
        )
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
    except RuntimeError as exc:
        raise StartupError(f"index_factory {factory!r} is not a valid FAISS factory string: {exc}") from exc
    return index if faiss.try_extract_index_ivf(index) is not None else faiss.IndexIDMap2(index)


class GlobalFeature(EmbeddingFeature):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    settings: GlobalFeaturesSettings

    def __init__(self, settings: GlobalFeaturesSettings) -> None:
        super().__init__(settings)
        self.retraining = Retraining()
        #: What queries are mapped with; the collection's layout holds what its rows were built
        #: with (training switches queries once the rebuilt index is in place).
        self._query_state = TrainedState()

    @property
    def state_path(self) -> Path:
        return self.settings.resolved_data_dir() / STATE_FILE

    def load_session(self) -> ImageEmbeddingSession:
        s = self.settings
        runtime = resolve_runtime(s.runtime, s.cpu_runtime, device_kind(s.device))
        if runtime == "onnx":  # served from a cached export; this process never imports torch
            return OnnxImageSession(s, EXPORT_BUILDER, EXPORT_SETTINGS, s.torch_threads)
        from services.global_features.model import TimmSession

        configure_torch(s)
        device = select_device(s.device)
        return TimmSession(s.model, MODEL.resolve(s), device, runtime, s.pooling)

    def load(self) -> None:
        super().load()
        if self.settings.index_factory:  # refuse a bad factory string at start-up, not at training
            make_compressed_index(self.session.dim, self.settings.index_factory)
        if self.state_path.exists():
            state = TrainedState.from_bytes(self.state_path.read_bytes())
            if state.whitening is not None and state.whitening.in_dim != self.session.dim:
                raise StartupError(
                    f"{self.state_path} was trained for {state.whitening.in_dim}-d vectors, "
                    f"the model gives {self.session.dim}-d; delete it and train again"
                )
            if state.factory != self.settings.index_factory:  # the compressed layout must be re-trained
                log.warning(
                    "index_factory changed from %r to %r: using a flat index until trained again",
                    state.factory,
                    self.settings.index_factory,
                )
                state = TrainedState(state.whitening, None, self.settings.index_factory)
            self._query_state = state

    # -- index layout -----------------------------------------------------------------------------------

    def out_dim(self) -> int:
        w = self._query_state.whitening
        return w.out_dim if w is not None else self.session.dim

    def index_layout(self) -> IndexLayout:
        return self.layout_for(self._query_state)

    def layout_for(self, state: TrainedState) -> IndexLayout:
        """The index layout of a trained state: rows are the whitened raw vectors, in a clone of
        the trained compressed index (or a flat one)."""
        in_dim, nprobe, whitening = self.session.dim, self.settings.nprobe, state.whitening
        dim = whitening.out_dim if whitening is not None else in_dim

        def rows(records: list[bytes]) -> np.ndarray:
            return state.apply(stored_rows(records, np.float32, in_dim))

        template = (
            faiss.deserialize_index(np.frombuffer(state.template, np.uint8))
            if state.template is not None
            else None
        )

        def new_index() -> AnyIndex:
            if template is None:
                return new_flat_index(dim, "l2")
            index = faiss.clone_index(template)
            ivf = faiss.try_extract_index_ivf(index)
            if ivf is not None:
                ivf.nprobe = nprobe
            return index

        kind = state.factory if state.template is not None else "flat"
        return IndexLayout(
            f"{kind}-l2-{dim}-nprobe{nprobe}-state{state.digest()}", dim, "l2", new_index, rows
        )

    def to_index_space(self, raw: np.ndarray) -> np.ndarray:
        return self._query_state.apply(raw)

    def info(self) -> dict[str, Any]:
        w = self._query_state.whitening
        return {
            **super().info(),
            "whitening": None
            if w is None
            else {"dim": w.out_dim, "power": w.power, "trained_on": w.trained_on},
            "index_factory": self._query_state.factory if self._query_state.template is not None else "flat",
            "training": self.retraining.status(),
        }

    # -- training -----------------------------------------------------------------------------------------

    def raw_vectors(self, limit: int) -> np.ndarray:
        _, batches = self.collection.store.snapshot_items()
        rows = [self.raw_from_stored(value) for batch in batches for _, value in batch]
        raw = np.stack(rows) if rows else np.zeros((0, self.session.dim), np.float32)
        if len(raw) > limit:
            raw = raw[np.random.default_rng(0).choice(len(raw), limit, replace=False)]
        return raw

    def train(
        self, whitening: bool = True, dim: int | None = None, power: float | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Learn whitening (and the compressed layout) from the stored vectors; rebuild the index.
        TrainingBusyError while another training runs.

        Whitening is first checked on the collection itself (:func:`train_checked_whitening`); when
        it would lower the self-check figure nothing changes, unless ``force``."""
        return self.retraining.run(lambda phase: self._train(phase, whitening, dim, power, force))

    def _train(
        self, phase: Phase, whitening: bool, dim: int | None, power: float | None, force: bool
    ) -> dict[str, Any]:
        s = self.settings
        started = time.monotonic()
        phase("sampling")
        raw = self.raw_vectors(s.pca_max_train)
        if len(raw) < s.pca_min_images:
            raise TrainingError(
                f"training needs at least {s.pca_min_images} stored images, the collection has {len(raw)}"
            )
        phase("training", sample=len(raw))
        pca = None
        check: dict[str, Any] | None = None
        if whitening:
            checked = train_checked_whitening(
                raw,
                s.pca_dim if dim is None else dim,
                s.pca_power if power is None else power,
                energy=s.pca_energy,
                per_vector=s.pca_per_vector,
            )
            pca = checked.whitening
            check = {
                "figure": SELF_CHECK_FIGURE,
                "raw": round(checked.before, 4),
                "whitened": round(checked.after, 4),
                "held_back": checked.held_back,
            }
            if not checked.keeps_quality and not force:
                log.warning("whitening refused by the self-check: %s", check)
                return {
                    "switched": False,
                    "reason": "whitening would lower the self-check figure on this collection; "
                    "nothing changed (send force: true to switch anyway)",
                    "self_check": check,
                    "trained_on": len(raw),
                    "dim": self.out_dim(),
                    "seconds": round(time.monotonic() - started, 3),
                }
        template = None
        if s.index_factory:
            vectors = pca.apply(raw) if pca is not None else raw
            index = make_compressed_index(vectors.shape[1], s.index_factory)
            try:
                index.train(vectors)
            except RuntimeError as exc:
                raise TrainingError(
                    f"index_factory {s.index_factory!r} cannot be trained on {len(vectors)} vectors: {exc}"
                ) from exc
            template = faiss.serialize_index(index).tobytes()
        state = TrainedState(pca, template, s.index_factory)
        write_atomic(self.state_path, state.to_bytes())
        phase("adding")
        # Rows are re-derived from raw vectors with the new state; queries switch once the new
        # index is in place. Applying whitening to raw vectors only is what rules out stacking.
        layout = self.layout_for(state)
        self.collection.relayout(layout)
        self._query_state = state
        self.collection.snapshot(force=True)
        seconds = time.monotonic() - started
        log.info("trained on %d vectors in %.1fs: %s", len(raw), seconds, layout.config)
        return {
            "switched": True,
            "self_check": check,
            "trained_on": len(raw),
            "whitening": pca is not None,
            "dim": self.out_dim(),
            "index": self.collection.index.type_name(),
            "indexed": self.collection.index.count(),
            "seconds": round(seconds, 3),
        }


def build_app(settings: GlobalFeaturesSettings | None = None) -> FastAPI:
    feature = GlobalFeature(settings or GlobalFeaturesSettings())
    app = create_app(feature)

    add_training_route(
        app,
        DESCRIPTOR.train_route or "",
        lambda body: feature.train(body.whitening, body.dim, body.power, body.force),
        TrainBody,
        "Learn PCA whitening (and the compressed index, if configured) from the stored vectors, "
        "then rebuild the index. Searches keep working meanwhile. Whitening is checked on the "
        "collection first (``self_check``: the figure with raw and with whitened vectors); when it "
        "would lower the figure nothing changes (``switched: false``) unless ``force`` is true.",
    )
    return app
