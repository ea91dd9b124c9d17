"""Collection analysis routes of every vector service: clustering runs where the vectors are.

``/analysis/moments``, ``/analysis/map`` and ``/analysis/pairs`` read the service's own index rows
(the collection's ``IndexLayout`` over the store: the whitened space for global_features, the hash
bits for phash) and answer with image ids only, so the gateway composes them without ever
receiving a vector; ``/analysis/distances`` answers the distances of given pairs of stored images
(the gateway's check of a duplicate link by a second feature). The first three are cached per
store generation and parameters: a computation runs in a background thread; a request waits
``ANALYSIS_WAIT_S`` for it, then gets the previous result (``"stale": true``) or
``202 {"status": "running", "progress": 0.0-1.0}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from services.common.features import analysis
from services.common.features.collection import Collection
from services.common.features.feature import VectorFeature
from services.common.features.index import VectorIndex
from services.common.schemas import ImageId

log = logging.getLogger(__name__)


class MomentsBody(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    granularity: float = Field(
        0.3, gt=0, le=1, description="kmeans: clusters per image (0.3: one moment per ~3 photos)"
    )
    method: Literal["kmeans", "density"] = Field("kmeans", description="kmeans, or density (DBSCAN)")
    eps: float = Field(0.2, gt=0, lt=2, description="density: cosine distance that makes neighbours")
    min_samples: int = Field(3, ge=1, le=1000, description="density: neighbours that make a core image")


class PairsBody(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    distance_threshold: float = Field(ge=0, description="pairs within this distance (the search's own)")
    max_per_image: int = Field(50, ge=1, le=1000, description="at most this many pairs per image")
    mirrored: bool = Field(
        False,
        description="also the pairs where one image's mirror is within the threshold, at that "
        "distance (where the service can mirror a stored value: phash; ignored elsewhere)",
    )


#: Pairs one /analysis/distances request may ask for (a rebuild sends its pairs in chunks).
MAX_DISTANCE_PAIRS = 10_000


class DistancesBody(BaseModel):
    pairs: list[tuple[ImageId, ImageId]] = Field(
        max_length=MAX_DISTANCE_PAIRS, description="pairs of stored image ids, [[a, b], ...]"
    )


def pair_distances(collection: Collection, pairs: list[tuple[int, int]]) -> list[float | None]:
    """The service's own distance of each pair (None where either image is not stored): the
    collection's index rows (the space /analysis/pairs and the searches compare in) through its
    own index type."""
    partners: dict[int, set[int]] = {}
    for a, b in pairs:
        partners.setdefault(a, set()).add(b)
    store = collection.store
    known: dict[tuple[int, int], float] = {}
    for a, others in partners.items():
        stored = store.get(a)
        items = [(b, v) for b in sorted(others) if (v := store.get(b)) is not None]
        if stored is None or not items:
            continue
        layout = collection.layout
        index = VectorIndex(layout.new_index)
        index.add(*layout.index_rows(items))
        distances, ids = index.search(layout.index_rows([(a, stored)])[1], len(items))
        for b, d in zip(ids[0].tolist(), distances[0].tolist(), strict=True):
            if b >= 0:
                known[(a, int(b))] = float(d)
    return [known.get((a, b)) for a, b in pairs]


def collection_rows(collection: Collection) -> tuple[int, np.ndarray, np.ndarray]:
    """(store generation, image ids, float32 index rows; hash bits as 0/1 for binary features)."""
    generation, batches = collection.store.snapshot_items()
    ids, rows = [], []
    for batch in batches:
        batch_ids, batch_rows = collection.layout.index_rows(batch)
        ids.append(batch_ids)
        rows.append(np.unpackbits(batch_rows, axis=1) if batch_rows.dtype == np.uint8 else batch_rows)
    if not ids:
        return generation, np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    return generation, np.concatenate(ids), np.concatenate(rows).astype(np.float32)


@dataclass
class Job:
    progress: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


class AnalysisCache:
    """One background computation per key at a time; the last result per key, tagged with the store
    generation it was computed at."""

    def __init__(self, generation: Callable[[], int], wait_s: float) -> None:
        self.generation = generation
        self.wait_s = wait_s
        self.results: dict[str, tuple[int, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def start(self, key: str, compute: Callable[[Job], tuple[int, Any]]) -> Job:
        with self.lock:
            job = self.jobs.get(key)
            if job is not None:
                return job
            job = self.jobs[key] = Job()

        def run() -> None:
            try:
                self.results[key] = compute(job)
            except Exception:
                log.exception("analysis %s failed", key)
            finally:
                with self.lock:
                    self.jobs.pop(key, None)
                job.done.set()

        threading.Thread(target=run, name=f"analysis-{key[:40]}", daemon=True).start()
        return job

    def get(self, key: str, compute: Callable[[Job], tuple[int, Any]]) -> tuple[Any, bool] | Job:
        """(result, stale) when there is one to give, else the running job."""
        current = self.results.get(key)
        if current is not None and current[0] == self.generation():
            return current[1], False
        job = self.start(key, compute)
        job.done.wait(self.wait_s)
        latest = self.results.get(key)
        if job.done.is_set() and latest is not None:
            return latest[1], latest[0] != self.generation()
        if latest is not None:
            return latest[1], True
        return job


def reply(found: tuple[Any, bool] | Job, generation: int) -> Any:
    if isinstance(found, Job):
        return JSONResponse(
            {"status": "running", "progress": round(found.progress, 3)},
            status_code=202,
            headers={"Retry-After": "2"},
        )
    result, stale = found
    return {**result, "stale": stale, "current_generation": generation}


def add_analysis_routes(app: FastAPI, service: VectorFeature, collection: Callable[[], Collection]) -> None:
    settings = service.settings
    cache = AnalysisCache(lambda: collection().store.generation, settings.analysis_wait_s)
    maps: dict[str, Any] = {}  # the last fitted layout: {"layout", "ids" (fitted), "generation"}

    def moments(body: MomentsBody, job: Job) -> tuple[int, Any]:
        generation, ids, rows = collection_rows(collection())

        def progress(p: float) -> None:
            job.progress = p

        if body.method == "kmeans":
            n_clusters = max(1, round(body.granularity * len(ids)))
            found = analysis.kmeans_moments(rows, n_clusters, dim=settings.analysis_dim, progress=progress)
        else:
            found = analysis.density_moments(
                rows, body.eps, body.min_samples, dim=settings.analysis_dim, progress=progress
            )
        return generation, {
            "generation": generation,
            "count": len(ids),
            "moments": [
                {
                    "members": ids[c.members].tolist(),
                    "distances": [round(d, 5) for d in c.distances],
                }
                for c in found.clusters
            ],
            "noise": ids[found.noise].tolist(),
        }

    def fit_map(job: Job) -> tuple[int, Any]:
        generation, ids, rows = collection_rows(collection())
        previous = maps.get("fit")
        changed = len(ids)
        if previous is not None:
            changed = len(np.setxor1d(previous["ids"], ids))
        refit = previous is None or changed > settings.map_refit_fraction * max(len(previous["ids"]), 1)
        if refit:
            layout, xy = analysis.fit_layout(
                rows,
                landmarks=settings.map_landmarks,
                dim=settings.analysis_dim,
                progress=lambda p: setattr(job, "progress", p),
            )
            maps["fit"] = {
                "layout": layout,
                "ids": ids,
                "xy": dict(zip(ids.tolist(), xy.tolist(), strict=True)),
            }
        fit = maps["fit"]
        known = fit["xy"]
        new = np.array([i not in known for i in ids.tolist()], dtype=bool)
        placed = fit["layout"].place(rows[new]) if new.any() else np.zeros((0, 2))
        positions = dict(known)
        positions.update(zip(ids[new].tolist(), placed.tolist(), strict=True))
        points = [
            {"image_id": i, "x": round(positions[i][0], 5), "y": round(positions[i][1], 5)}
            for i in ids.tolist()
        ]
        return generation, {
            "generation": generation,
            "count": len(ids),
            "refitted": refit,
            "placed_without_refit": int(new.sum()),
            "points": points,
        }

    @app.post("/analysis/moments", tags=["analysis"])
    async def analysis_moments(body: MomentsBody) -> Any:
        """Clusters of the stored images: ``moments`` (largest first) of ``members`` ordered by cosine
        distance to the centroid (``distances``; the first member is the representative), and
        ``noise`` (density only). 202 while a first computation runs."""
        key = f"moments:{body.model_dump_json()}"
        found = await run_in_threadpool(cache.get, key, lambda job: moments(body, job))
        return reply(found, collection().store.generation)

    @app.post("/analysis/map", tags=["analysis"])
    async def analysis_map() -> Any:
        """A 2-D layout of the stored images (landmark t-SNE; x, y in [-1, 1]), refitted once
        ``MAP_REFIT_FRACTION`` of the collection changed; images added since are placed on it."""
        found = await run_in_threadpool(cache.get, "map", fit_map)
        return reply(found, collection().store.generation)

    @app.post("/analysis/pairs", tags=["analysis"])
    async def analysis_pairs(body: PairsBody) -> Any:
        """Every pair of stored images within ``distance_threshold`` of each other, in the service's
        own search distance: ``pairs`` of ``[image_id, image_id, distance]`` (smaller id first)."""

        def pairs(job: Job) -> tuple[int, Any]:
            store = collection().store
            generation, batches = store.snapshot_items()
            found: dict[tuple[int, int], float] = {}
            index = service.collection.index
            for batch in batches:
                ids, _ = service.collection.layout.index_rows(batch)
                queries = np.stack([service.vector_from_stored(v) for _, v in batch])
                hits = [index.range_search(queries, body.distance_threshold)]
                mirrors = [service.mirrored_from_stored(v) for _, v in batch] if body.mirrored else []
                if mirrors and all(m is not None for m in mirrors):
                    hits.append(index.range_search(np.stack(mirrors), body.distance_threshold))
                for row, image_id in enumerate(ids.tolist()):
                    nearest: dict[int, float] = {}  # as itself or mirrored, whichever is closer
                    for variant in hits:
                        hit = variant[row]
                        for other, distance in zip(hit.ids.tolist(), hit.distances.tolist(), strict=True):
                            if other != image_id:
                                nearest[other] = min(float(distance), nearest.get(other, float(distance)))
                    closest = sorted(nearest.items(), key=lambda item: (item[1], item[0]))
                    for other, distance in closest[: body.max_per_image]:
                        key = (min(image_id, other), max(image_id, other))
                        found[key] = min(distance, found.get(key, distance))
                job.progress = min(0.99, job.progress + len(batch) / max(store.count(), 1))
            pairs = [(a, b, d) for (a, b), d in sorted(found.items())]
            return generation, {"generation": generation, "pairs": pairs}

        key = f"pairs:{body.model_dump_json()}"
        found = await run_in_threadpool(cache.get, key, pairs)
        return reply(found, collection().store.generation)

    @app.post("/analysis/distances", tags=["analysis"])
    async def analysis_distances(body: DistancesBody) -> Any:
        """The distance of each of ``pairs`` of stored images in the service's own search distance:
        ``distances`` in the order asked, ``null`` where either image is not stored. Computed on
        request (a few pairs per add, chunks of a rebuild), never cached."""
        pairs = [(int(a), int(b)) for a, b in body.pairs]
        distances = await run_in_threadpool(pair_distances, collection(), pairs)
        return {"distances": distances}
