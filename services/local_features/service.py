"""Wires local features (extraction, index training, voting + verification) to the service kit."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field, model_validator
from threadpoolctl import threadpool_limits

from services.common.errors import StartupError, WeightsMissingError
from services.common.features.app import create_app
from services.common.features.collection import IndexLayout
from services.common.features.feature import FeatureService, Hit
from services.common.features.index import AnyIndex, new_flat_index, write_atomic
from services.common.features.training import (
    Phase,
    Retraining,
    TrainingError,
    TrainingParamsError,
    add_training_route,
)
from services.common.schemas import SearchParams
from services.common.settings import ServiceSettings
from services.local_features import indexing
from services.local_features.descriptor import DESCRIPTOR, MODEL
from services.local_features.extraction import (
    DIM,
    ID_SHIFT,
    MAX_KEYPOINTS,
    RECORD_VERSION,
    DescriptorModel,
    Features,
    KeypointParams,
    RootSiftDescriptor,
    decode_record,
    extract,
    mirror_gray,
    query_features,
    record_count,
    stacked_descriptors,
)
from services.local_features.matching import MatchParams, VerifyParams, inlier_scores

log = logging.getLogger(__name__)

#: FAISS ids are image_id << 10 | keypoint, and must stay below 2^63.
MAX_IMAGE_ID = 2**53
TRAINED_FILE = "trained.index"


class LocalFeaturesSettings(ServiceSettings):
    service_descriptor = DESCRIPTOR

    descriptor: Literal["hardnet8", "rootsift"] = Field(
        "hardnet8", description="Patch descriptor: hardnet8 (kornia, needs weights) or rootsift (no weights)"
    )
    hardnet_weights: str = Field(
        "kornia",
        description="HardNet8 weights: kornia (pretrained hardnet8v2 in $AMBIENCE_MODELS_DIR/local_features, "
        "downloaded when online unless AMBIENCE_DOWNLOAD_MODELS=0), a local file path, or random "
        "(tests only, needs AMBIENCE_ALLOW_RANDOM_WEIGHTS=1)",
    )
    patch_scale: float = Field(6.0, gt=0, description="HardNet patch half-side in SIFT keypoint radii")
    device: str = Field("", description="torch device for HardNet8 (default: cuda when available, else cpu)")
    max_side: int = Field(800, ge=64, description="Images are downscaled so their long side is <= this")
    max_keypoints: int = Field(200, ge=4, le=MAX_KEYPOINTS, description="Keypoints kept per image (N)")
    neighbour_radius: float = Field(50.0, ge=0, description="Neighbour-limit radius in pixels")
    max_neighbours: int = Field(
        3, ge=0, description="Skip a keypoint near a chosen one that has this many neighbours"
    )
    contrast_threshold: float = Field(
        0.003, gt=0, description="SIFT DoG contrast threshold (low: smooth photos still get keypoints)"
    )
    sift_candidates: int = Field(3000, ge=1, description="Strongest SIFT keypoints considered for selection")
    query_keypoints: int = Field(
        300,
        ge=0,
        le=MAX_KEYPOINTS,
        description="Keypoints kept per query pyramid level (0: MAX_KEYPOINTS); not stored, so more "
        "only costs search time",
    )
    query_octaves: int = Field(
        2, ge=1, le=4, description="Query pyramid levels (1: as stored; 2: also the half-size query)"
    )
    k_clusters: int = Field(5, ge=1, le=1024, description="Index neighbours looked up per query descriptor")
    matching_threshold: float = Field(
        0.0, ge=0, description="Squared-L2 distance under which a neighbour votes (0: per-descriptor default)"
    )
    max_candidates: int = Field(20, ge=1, description="Images verified per query (most votes first)")
    min_inliers: int = Field(8, ge=1, description="Inliers a verified match needs to be returned")
    smnn_ratio: float = Field(0.9, gt=0, le=1, description="SMNN second-nearest ratio")
    same_point_radius: float = Field(
        8.0, ge=0, description="SMNN: query keypoints this close (px) are one point at two pyramid levels"
    )
    reprojection_threshold: float = Field(6.0, gt=0, description="MAGSAC++ threshold in pixels")
    magsac_iterations: int = Field(2000, ge=10, description="MAGSAC++ maximum iterations")
    index_factory: str = Field("", description="FAISS factory for training (empty: by collection size)")
    nprobe: int = Field(16, ge=1, description="IVF lists probed per query once trained")
    max_train_vectors: int = Field(200_000, ge=indexing.MIN_TRAIN_VECTORS, description="Training sample size")
    kmeans_iterations: int = Field(20, ge=1, description="k-means iterations when training the IVF")
    opq_iterations: int = Field(10, ge=1, description="OPQ rotation iterations when training")


#: Squared-L2 vote thresholds that keep true correspondences (measured on ../shared/photos crops).
DEFAULT_MATCHING_THRESHOLD = {"rootsift": 0.2, "hardnet8": 1.0}


class LocalFeaturesParams(BaseModel):
    mirrored: bool = Field(False, description="Also search with the mirrored query image (by-image only)")
    min_matches: int | None = Field(
        None,
        ge=1,
        description="Return every verified image with at least this many inlier matches (instead of k)",
    )
    distance_threshold: float | None = Field(
        None,
        ge=0,
        description="Alias of min_matches, kept for the upstream API: here it is a minimum inlier count "
        "(more matches = closer), not a maximum distance",
    )

    @model_validator(mode="before")
    @classmethod
    def _min_matches_is_the_threshold(cls, data: Any) -> Any:
        """The kit's searches take their threshold from ``distance_threshold``; min_matches is
        the name this service gives it."""
        if not isinstance(data, dict) or data.get("min_matches") in (None, ""):
            return data
        given, alias = data["min_matches"], data.get("distance_threshold")
        if alias not in (None, "") and not _same_number(given, alias):
            raise ValueError("give min_matches or its alias distance_threshold, not both")
        return {**data, "distance_threshold": given}


def _same_number(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class LocalMatch(BaseModel):
    image_id: int
    matches: int = Field(description="MAGSAC++ inlier matches (the image itself: its keypoint count)")


class TrainRequest(BaseModel):
    factory: str | None = Field(None, description="FAISS factory string (default: the setting, or auto)")


class LocalFeatures(FeatureService):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    QueryParams = LocalFeaturesParams
    ResultModel = LocalMatch
    max_image_id = MAX_IMAGE_ID
    settings: LocalFeaturesSettings

    def __init__(self, settings: LocalFeaturesSettings) -> None:
        super().__init__(settings)
        s = settings
        self.keypoint_params = KeypointParams(
            max_side=s.max_side,
            max_keypoints=s.max_keypoints,
            neighbour_radius=s.neighbour_radius,
            max_neighbours=s.max_neighbours,
            contrast_threshold=s.contrast_threshold,
            candidates=s.sift_candidates,
        )
        self.query_keypoint_params = dataclasses.replace(
            self.keypoint_params, max_keypoints=s.query_keypoints or s.max_keypoints
        )
        self.verify_params = VerifyParams(
            smnn_ratio=s.smnn_ratio,
            same_point_radius=s.same_point_radius,
            reprojection_threshold=s.reprojection_threshold,
            max_iterations=s.magsac_iterations,
        )
        self.matching_threshold = s.matching_threshold or DEFAULT_MATCHING_THRESHOLD[s.descriptor]
        self.match_params = MatchParams(
            s.k_clusters, self.matching_threshold, s.max_candidates, self.verify_params
        )
        self.model: DescriptorModel | None = None
        self.weights_label = "none"
        self.weights_digest = "none"
        self._trained: AnyIndex | None = None
        self._trained_digest = ""
        self.retraining = Retraining()

    # -- lifecycle -----------------------------------------------------------------------------------

    def load(self) -> None:
        # Verification multiplies matrices of a few hundred rows per candidate; a second BLAS
        # thread costs more in hand-offs than it computes there (2-40x slower on 2 busy cores),
        # and requests already run concurrently: BLAS gets SEARCH_THREADS, as FAISS does.
        threadpool_limits(limits=self.settings.search_threads, user_api="blas")
        self.model = self._load_model()
        self._load_trained()

    def _load_model(self) -> DescriptorModel:
        s = self.settings
        if s.descriptor == "rootsift":
            return RootSiftDescriptor()
        from services.local_features.hardnet import HardNet8Descriptor

        try:
            # Shared resolution: "random" (tests), a file path, or the "kornia" file, fetched when
            # missing and AMBIENCE_DOWNLOAD_MODELS allows; never a silent fallback to random weights.
            weights = MODEL.resolve(s)
        except WeightsMissingError as exc:
            raise WeightsMissingError(
                f"{exc}; or use the weight-free descriptor with AMBIENCE_LOCAL_FEATURES_DESCRIPTOR=rootsift"
            ) from None
        try:
            model = HardNet8Descriptor(weights, patch_scale=s.patch_scale, device=s.device or None)
        except Exception as exc:
            raise StartupError(f"cannot load HardNet8 weights from {weights.source}: {exc}") from None
        self.weights_label = "random" if weights.random else str(weights.path)
        # The store metadata keeps the first 16 hex digits of the sha256 (as before the shared layer),
        # so existing data dirs stay valid.
        self.weights_digest = weights.digest if weights.random else weights.digest[:16]
        return model

    @property
    def trained_path(self) -> Path:
        return self.settings.resolved_data_dir() / TRAINED_FILE

    def _load_trained(self) -> None:
        path = self.trained_path
        if not path.exists():
            return
        try:
            data = path.read_bytes()
            index = indexing.deserialize(data)
            if index.d != DIM or not index.is_trained or index.ntotal != 0:
                raise ValueError(f"not an empty trained {DIM}-d index")
        except Exception as exc:
            log.warning("ignoring trained index %s (%s); using the exact index", path, exc)
            return
        self._trained = index
        self._trained_digest = hashlib.sha256(data).hexdigest()[:16]

    def bind(self, collection: Any) -> None:
        super().bind(collection)
        collection.index.with_index(lambda index: indexing.set_nprobe(index, self.settings.nprobe))

    # -- identity ----------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "feature": "local_features",
            "descriptor": self.settings.descriptor,
            "weights": self.weights_digest,
            "dim": DIM,
            "record_version": RECORD_VERSION,
        }
        if self.settings.descriptor == "hardnet8":
            meta["patch_scale"] = self.settings.patch_scale
        return meta

    def info(self) -> dict[str, Any]:
        return {
            "feature": "local_features",
            "descriptor": self.settings.descriptor,
            "weights": self.weights_label,
            "weights_digest": self.weights_digest,
            "index_trained": self._trained is not None,
            "nprobe": self.settings.nprobe,
            "matching_threshold": self.matching_threshold,
            "training": self.retraining.status(),
        }

    # -- index layout ------------------------------------------------------------------------------

    def index_layout(self) -> IndexLayout:
        return self.layout_for(self._trained, self._trained_digest)

    def layout_for(self, trained: AnyIndex | None, digest: str) -> IndexLayout:
        """Every stored descriptor is a row (ids: see extraction.ID_SHIFT), in a clone of the
        trained index or an exact one."""
        nprobe = self.settings.nprobe

        def new_index() -> AnyIndex:
            if trained is None:
                return new_flat_index(DIM, "l2")
            index = faiss.clone_index(trained)
            indexing.set_nprobe(index, nprobe)
            return index

        config = f"trained-{digest}" if trained is not None else f"flat-l2-{DIM}"
        return IndexLayout(
            config, DIM, "l2", new_index, stacked_descriptors, row_count=record_count, id_shift=ID_SHIFT
        )

    # -- work --------------------------------------------------------------------------------------

    def _gray(self, data: bytes) -> np.ndarray:
        # max_side bounds the long side: the short side it needs follows from the aspect ratio.
        gray = self.decode(data, "L", draft_long_side=self.settings.max_side).image
        return np.asarray(gray, dtype=np.uint8)

    def features_of(self, gray: np.ndarray) -> tuple[Features, bytes]:
        assert self.model is not None, "load() was not called"
        return extract(gray, self.keypoint_params, self.model)

    def query_features(self, gray: np.ndarray) -> Features:
        assert self.model is not None, "load() was not called"
        return query_features(gray, self.query_keypoint_params, self.model, self.settings.query_octaves)

    def extract(self, data: bytes) -> bytes:
        return self.features_of(self._gray(data))[1]

    def search_by_image(self, data: bytes, search: SearchParams, params: BaseModel) -> list[Hit]:
        assert isinstance(params, LocalFeaturesParams)
        gray = self._gray(data)
        variants = [gray, mirror_gray(gray)] if params.mirrored else [gray]
        queries = [self.query_features(g) for g in variants]
        return self.rank(self.match(queries, needed=self.needed_inliers(search)), search)

    def search_by_stored(
        self, image_id: int, stored: bytes, search: SearchParams, params: BaseModel
    ) -> list[Hit]:
        # The stored record is the query (no image to mirror); the image itself comes first.
        query = decode_record(stored)
        scores = self.match([query], exclude=image_id, needed=self.needed_inliers(search))
        hits = self.rank(scores, search)
        itself = {"image_id": image_id, "matches": len(query)}
        return [itself, *hits[: self.result_limit(search) - 1]]

    def match(self, queries: list[Features], exclude: int | None = None, needed: int = 4) -> dict[int, int]:
        """Inlier count per verified image (matching.inlier_scores over this service's index)."""
        return inlier_scores(
            self.collection.index, self.collection.store.get, queries, self.match_params, exclude, needed
        )

    def needed_inliers(self, search: SearchParams) -> int:
        """min_matches (alias distance_threshold): at least this many inliers (more = closer)."""
        if search.distance_threshold is not None:
            return max(1, math.ceil(search.distance_threshold))
        return self.settings.min_inliers

    def rank(self, scores: dict[int, int], search: SearchParams) -> list[Hit]:
        needed = self.needed_inliers(search)
        ranked = sorted(
            ((image_id, n) for image_id, n in scores.items() if n >= needed),
            key=lambda item: (-item[1], item[0]),
        )
        return [{"image_id": image_id, "matches": n} for image_id, n in ranked[: self.result_limit(search)]]

    def result_limit(self, search: SearchParams) -> int:
        """k, or for a minimum-inlier search the ``max_k`` best."""
        return search.k if search.k is not None else self.settings.max_k

    # -- training ------------------------------------------------------------------------------------

    def stored_descriptor_count(self) -> int:
        _, batches = self.collection.store.snapshot_items()
        return sum(record_count(record) for batch in batches for _, record in batch)

    def train(self, factory: str | None = None) -> dict[str, Any]:
        """Train an OPQ/IVF/PQ index on the stored descriptors, persist its empty structure,
        rebuild from the store into it and swap it in. Searches continue on the old index.
        TrainingBusyError while another training runs."""
        return self.retraining.run(lambda phase: self._train(phase, factory))

    def _train(self, phase: Phase, factory: str | None) -> dict[str, Any]:
        started = time.monotonic()
        phase("counting")
        total = self.stored_descriptor_count()
        if total < indexing.MIN_TRAIN_VECTORS:
            raise TrainingError(
                f"{total} descriptors stored; training needs at least {indexing.MIN_TRAIN_VECTORS} "
                "(add more images first; the exact index serves until then)"
            )
        factory = factory or self.settings.index_factory or indexing.auto_factory(total)
        phase("sampling", descriptors=total, factory=factory)
        _, batches = self.collection.store.snapshot_items()
        sample = indexing.sample_vectors(
            (stacked_descriptors([record for _, record in batch]) for batch in batches),
            total,
            self.settings.max_train_vectors,
        )
        phase("training", sample=len(sample))
        try:
            trained = indexing.train_index(
                factory, sample, self.settings.kmeans_iterations, self.settings.opq_iterations
            )
        except RuntimeError as exc:  # FAISS rejects a malformed factory string
            raise TrainingParamsError(f"cannot build index: {exc}") from exc
        data = indexing.serialize(trained)
        phase("adding")
        # The file first: a crash after this rebuilds into the trained layout on restart.
        write_atomic(self.trained_path, data)
        digest = hashlib.sha256(data).hexdigest()[:16]
        self.collection.relayout(self.layout_for(trained, digest))
        self._trained, self._trained_digest = trained, digest
        self.collection.snapshot(force=True)
        return {
            "index_type": self.collection.index.type_name(),
            "factory": factory,
            "descriptors": total,
            "trained_on": len(sample),
            "entries": self.collection.index.count(),
            "seconds": round(time.monotonic() - started, 2),
        }


def build_app(settings: LocalFeaturesSettings | None = None) -> FastAPI:
    service = LocalFeatures(settings or LocalFeaturesSettings())
    app = create_app(service)

    add_training_route(
        app,
        DESCRIPTOR.train_route or "",
        lambda body: service.train(body.factory),
        TrainRequest,
        "Train the compressed index from the stored descriptors and swap it in atomically. "
        "Searches keep working meanwhile; returns when the new index serves.",
    )

    return app
