"""Wires face detection and description (detection.py, descriptors.py, extraction.py) and the
face searches (matching.py) to the service kit.

One stored record per image holds all its faces (several FAISS rows per image, as local features
store keypoints); deleting the image deletes its faces. Routes beyond the standard four:
``/faces_of_image`` (the stored faces of an image), ``/faces_search_faces_by_image_buffer`` and
``/faces_search_faces_by_id`` (per face, its nearest stored faces), ``/faces_descriptors`` (every
stored face's descriptor, a page of images at a time) and ``/faces_changes`` (the images added
and deleted since a store generation): what the gateway's people grouping reads.
"""

from __future__ import annotations

import base64
import bisect
import functools
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from PIL import Image
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from services.common.app import read_upload
from services.common.features.app import create_app
from services.common.features.collection import IndexLayout
from services.common.features.feature import FeatureService, Hit
from services.common.features.index import new_flat_index
from services.common.features.store import OP_ADD
from services.common.limits import check_k
from services.common.schemas import ERROR_RESPONSES, ImageId, SearchParams
from services.faces import weights
from services.faces.descriptor import DESCRIPTOR
from services.faces.descriptors import CHIP_PADDING, CHIP_SIZE, DIM, FaceDescriber
from services.faces.detection import PASS_NAMES, FaceDetector
from services.faces.extraction import (
    CAPPED,
    ID_SHIFT,
    MAX_FACES,
    OUT_OF_TIME,
    RECORD_VERSION,
    ImageFaces,
    analyse,
    decode_record,
    encode_record,
    record_count,
    stacked_descriptors,
)
from services.faces.matching import face_row_id, nearest_faces, nearest_images
from services.faces.settings import FacesSettings

#: FAISS ids are image_id << 10 | face, and must stay below 2^63.
MAX_IMAGE_ID = 2**53
#: Images one /faces_descriptors page may hold, and the faces after which it ends early.
MAX_DESCRIPTOR_PAGE = 10_000
MAX_PAGE_FACES = 20_000


class FaceMatch(BaseModel):
    image_id: int
    distance: float = Field(description="Euclidean distance between the two faces' descriptors")
    face: int = Field(description="Index of the stored face in its image")
    query_face: int = Field(description="Index of the query's face that matched")


class StoredFace(BaseModel):
    image_id: int
    face: int
    distance: float


class FaceInfo(BaseModel):
    face: int = Field(description="Index of the face in its image (largest face first)")
    box: list[float] = Field(description="left, top, right, bottom in pixels of the full photo")
    landmarks: list[list[float]] = Field(description="5 points [x, y]: eye corners and the base of the nose")
    size: float = Field(description="Side of the box in pixels of the full photo")
    score: float = Field(description="Detector score (higher: surer)")
    found_by: str = Field(description="hog, hog-upsampled or cnn")
    descriptor: list[float] | None = Field(None, description="128-d descriptor, when asked for")
    matches: list[StoredFace] | None = Field(None, description="Nearest stored faces (searches only)")


class ImageFacesReply(BaseModel):
    image_id: int | None = None
    width: int
    height: int
    found: int = Field(description="Faces of at least the minimum size the detector found")
    capped: bool = Field(description="More faces were found than AMBIENCE_FACES_MAX_FACES")
    out_of_time: bool = Field(description="The time budget ran out before every face was described")
    faces: list[FaceInfo]


class FacesOfImageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: ImageId
    descriptors: bool = Field(False, description="Include each face's 128-d descriptor")


class FaceSearchById(SearchParams):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    image_id: ImageId
    face: int | None = Field(None, ge=0, le=MAX_FACES, description="One face of the image (default: all)")


class DescriptorsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: ImageId | None = Field(None, description="Only images above this id (the last page's next_after)")
    limit: int = Field(1000, ge=1, le=MAX_DESCRIPTOR_PAGE, description="At most this many images")


class DescriptorsPage(BaseModel):
    image_ids: list[int] = Field(description="Per face: its image")
    faces: list[int] = Field(description="Per face: its index in the image")
    descriptors: str = Field(description="base64 of the faces' descriptors, float32 little-endian, n x 128")
    images: list[int] = Field(description="The images of this page, faceless ones included, ascending")
    next_after: int | None = Field(description="Pass as `after` for the next page; null after the last")
    generation: int = Field(
        description="Store generation of this page; follow /faces_changes from the first's"
    )


class ChangesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: int = Field(ge=0, description="A generation from /faces_descriptors or a previous /faces_changes")
    limit: int = Field(10_000, ge=1, le=100_000, description="At most this many changes")


class Change(BaseModel):
    generation: int
    op: Literal["add", "delete"]
    image_id: int


class ChangesReply(BaseModel):
    generation: int = Field(description="Pass as `since` next time")
    changes: list[Change]
    more: bool = Field(description="More changes follow (ask again from `generation`)")


@functools.lru_cache(maxsize=4)
def load_models(
    shape_predictor: Path, resnet: Path, cnn: Path | None
) -> tuple[FaceDetector, FaceDescriber, str]:
    """The detector, the describer and the digest of the descriptor's weights, loaded once per
    process (the models are read-only once loaded; the describer serialises its forward passes)."""
    # Detection settings change which faces are found, not what a descriptor means: only the
    # descriptor's own weights go into the store's metadata.
    digest = weights.digest([shape_predictor, resnet])[:16]
    return FaceDetector(cnn), FaceDescriber(shape_predictor, resnet), digest


class FacesFeature(FeatureService):
    store_route = DESCRIPTOR.store  # type: ignore[assignment]
    search_route = DESCRIPTOR.search  # type: ignore[assignment]
    ResultModel = FaceMatch
    max_image_id = MAX_IMAGE_ID
    description = (
        "Faces: every face in a picture (dlib HOG detector, 5-point landmarks) and its 128-d descriptor "
        "(dlib ResNet), searched by Euclidean distance (same person: about 0.6 or less)."
    )
    settings: FacesSettings

    def __init__(self, settings: FacesSettings) -> None:
        super().__init__(settings)
        self.params = settings.analysis_params()
        self.detector: FaceDetector | None = None
        self.describer: FaceDescriber | None = None
        self.weights_folder = ""
        self.weights_digest = "none"
        registry = self.metrics.registry
        self.faces_stored = Counter("ambience_faces_stored", "Faces stored", registry=registry)
        self.faces_dropped = Counter(
            "ambience_faces_dropped",
            "Faces found but not stored (max_faces cap or time budget)",
            ["reason"],
            registry=registry,
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    def load(self) -> None:
        s = self.settings
        paths = weights.resolve(s.weights_dir, s.fallback)
        self.detector, self.describer, self.weights_digest = load_models(
            paths[weights.SHAPE_PREDICTOR], paths[weights.RESNET], paths.get(weights.CNN_DETECTOR)
        )
        self.weights_folder = str(paths[weights.RESNET].parent)

    # -- identity ----------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {
            "feature": "faces",
            "descriptor": "dlib_face_recognition_resnet_model_v1",
            "weights": self.weights_digest,
            "dim": DIM,
            "chip": [CHIP_SIZE, CHIP_PADDING],
            "record_version": RECORD_VERSION,
        }

    def info(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "feature": "faces",
            "distance": "euclidean",
            "weights": "packaged" if not s.weights_dir else "file",
            "weights_dir": self.weights_folder,
            "weights_digest": self.weights_digest,
            "detector": {
                "first": "hog",
                "fallback": s.fallback,
                "max_side": s.max_side,
                "min_face_size": s.min_face_size,
                "min_face_fraction": s.min_face_fraction,
                "max_faces": s.max_faces,
            },
        }
        collection = self._open_collection()
        if collection is not None:
            out["faces"] = collection.index.count()
        return out

    # -- index layout ------------------------------------------------------------------------------

    def index_layout(self) -> IndexLayout:
        return IndexLayout(
            f"flat-l2-{DIM}-faces",
            DIM,
            "l2",
            lambda: new_flat_index(DIM, "l2"),
            stacked_descriptors,
            row_count=record_count,
            id_shift=ID_SHIFT,
        )

    # -- work --------------------------------------------------------------------------------------

    def photo(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """The analysed photo (RGB uint8, long side <= max_side) and the full photo's size."""
        max_side = self.settings.max_side
        decoded = self.decode(data, "RGB", draft_long_side=max_side)
        image = decoded.image
        if max(image.size) > max_side:
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image), decoded.full_size

    def faces_of(self, data: bytes) -> ImageFaces:
        assert self.detector is not None and self.describer is not None, "load() was not called"
        started = time.monotonic()
        rgb, full_size = self.photo(data)
        return analyse(rgb, full_size, self.detector, self.describer, self.params, started)

    def extract(self, data: bytes) -> bytes:
        faces = self.faces_of(data)
        self.faces_stored.inc(len(faces))
        if faces.flags & CAPPED:
            self.faces_dropped.labels(reason="max_faces").inc(faces.found - self.settings.max_faces)
        if faces.flags & OUT_OF_TIME:
            kept = min(faces.found, self.settings.max_faces)
            self.faces_dropped.labels(reason="time_budget").inc(kept - len(faces))
        return encode_record(faces)

    def limit(self, search: SearchParams) -> int:
        return search.k if search.k is not None else self.settings.max_k

    def search_by_image(self, data: bytes, search: SearchParams, params: BaseModel) -> list[Hit]:
        queries = self.faces_of(data).descriptors
        return nearest_images(
            self.collection.index, queries, search.k, search.distance_threshold, self.settings.max_k
        )

    def search_by_stored(
        self, image_id: int, stored: bytes, search: SearchParams, params: BaseModel
    ) -> list[Hit]:
        """The image itself comes first (its faces are at distance 0), then the others."""
        queries = decode_record(stored).descriptors
        if len(queries) == 0:
            return []
        limit = self.limit(search)
        others = nearest_images(
            self.collection.index,
            queries,
            None if search.k is None else max(search.k - 1, 1),
            search.distance_threshold,
            self.settings.max_k,
            exclude_image=image_id,
        )
        itself = {"image_id": image_id, "distance": 0.0, "face": 0, "query_face": 0}
        return [itself, *others][:limit]

    # -- the people routes' work ----------------------------------------------------------------------

    def faces_reply(
        self,
        faces: ImageFaces,
        image_id: int | None,
        with_descriptors: bool,
        matches: list[list[dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        out = []
        for i in range(len(faces)):
            left, top, right, bottom = (float(v) for v in faces.boxes[i])
            face: dict[str, Any] = {
                "face": i,
                "box": [left, top, right, bottom],
                "landmarks": faces.landmarks[i].tolist(),
                "size": min(right - left, bottom - top),
                "score": float(faces.scores[i]),
                "found_by": PASS_NAMES.get(int(faces.found_by[i]), "unknown"),
            }
            if with_descriptors:
                face["descriptor"] = faces.descriptors[i].tolist()
            if matches is not None:
                face["matches"] = matches[i]
            out.append(face)
        return {
            "image_id": image_id,
            "width": faces.size[0],
            "height": faces.size[1],
            "found": faces.found,
            "capped": bool(faces.flags & CAPPED),
            "out_of_time": bool(faces.flags & OUT_OF_TIME),
            "faces": out,
        }

    def stored_faces(self, image_id: int) -> ImageFaces:
        stored = self.collection.store.get(image_id)
        if stored is None:
            raise HTTPException(404, f"image_id {image_id} not found")
        return decode_record(stored)

    def search_faces_by_image(self, data: bytes, search: SearchParams) -> dict[str, Any]:
        faces = self.faces_of(data)
        matches = nearest_faces(
            self.collection.index, faces.descriptors, search.k, search.distance_threshold, self.settings.max_k
        )
        return self.faces_reply(faces, None, False, matches)

    def search_faces_by_id(self, body: FaceSearchById) -> dict[str, Any]:
        faces = self.stored_faces(body.image_id)
        if body.face is not None and body.face >= len(faces):
            raise HTTPException(
                404, f"image_id {body.image_id} has {len(faces)} face(s), no face {body.face}"
            )
        chosen = range(len(faces)) if body.face is None else [body.face]
        matches = nearest_faces(
            self.collection.index,
            faces.descriptors[list(chosen)],
            body.k,
            body.distance_threshold,
            self.settings.max_k,
            exclude=[face_row_id(body.image_id, i) for i in chosen],
        )
        reply = self.faces_reply(faces, body.image_id, False, [[] for _ in range(len(faces))])
        reply["faces"] = [
            {**reply["faces"][i], "matches": found} for i, found in zip(chosen, matches, strict=True)
        ]
        return reply

    def descriptors_page(self, ids: list[int], generation: int, body: DescriptorsBody) -> dict[str, Any]:
        """Up to ``limit`` images after ``after``; the page ends early past MAX_PAGE_FACES faces (a
        page of crowds stays a few MB), always holding at least one image."""
        start = bisect.bisect_right(ids, body.after) if body.after is not None else 0
        candidates = ids[start : start + body.limit]
        found = self.collection.store.get_many(candidates)
        page: list[int] = []
        image_ids: list[int] = []
        faces: list[int] = []
        rows = []
        for image_id in candidates:
            if page and len(faces) >= MAX_PAGE_FACES:
                break
            page.append(image_id)
            record = found.get(image_id)
            if record is None:  # deleted since the ids were listed; /faces_changes has the delete
                continue
            n = record_count(record)
            image_ids += [image_id] * n
            faces += range(n)
            rows.append(stacked_descriptors([record]))
        matrix = np.concatenate(rows) if rows else np.zeros((0, DIM), np.float32)
        done = start + len(page) >= len(ids)
        return {
            "image_ids": image_ids,
            "faces": faces,
            "descriptors": base64.b64encode(np.ascontiguousarray(matrix, "<f4").tobytes()).decode(),
            "images": page,
            "next_after": None if done or not page else page[-1],
            "generation": generation,
        }

    def changes(self, body: ChangesBody) -> dict[str, Any]:
        result = self.collection.store.changes_since(body.since)
        if result is None:
            raise HTTPException(
                410,
                f"the change log no longer reaches generation {body.since} (it is trimmed at each index "
                "snapshot); page through /faces_descriptors again",
            )
        current, changes = result
        more = len(changes) > body.limit
        changes = changes[: body.limit]
        return {
            "generation": changes[-1][0] if more else current,
            "changes": [
                {"generation": g, "op": "add" if op == OP_ADD else "delete", "image_id": image_id}
                for g, op, image_id in changes
            ],
            "more": more,
        }


def build_app(settings: FacesSettings | None = None) -> FastAPI:
    service = FacesFeature(settings or FacesSettings())
    app = create_app(service)
    s = service.settings

    @app.post("/faces_of_image", response_model=ImageFacesReply, responses=ERROR_RESPONSES)
    async def faces_of_image(body: FacesOfImageBody) -> dict[str, Any]:
        """The stored faces of an image: boxes, landmarks, scores (and descriptors when asked)."""
        faces = await run_in_threadpool(service.stored_faces, body.image_id)
        return service.faces_reply(faces, body.image_id, body.descriptors)

    @app.post(
        "/faces_search_faces_by_image_buffer", response_model=ImageFacesReply, responses=ERROR_RESPONSES
    )
    async def search_faces_by_image(
        image: Annotated[UploadFile, File(description="The query image")],
        form: Annotated[SearchParams, Form()],
    ) -> dict[str, Any]:
        """Each face found in an upload with its nearest stored faces (k, or all within the threshold)."""
        check_k(form.k, s.max_k, f"{s.env_prefix()}MAX_K")
        data = await read_upload(image, s.max_upload_bytes)
        return await run_in_threadpool(service.search_faces_by_image, data, form)

    @app.post("/faces_search_faces_by_id", response_model=ImageFacesReply, responses=ERROR_RESPONSES)
    async def search_faces_by_id(body: FaceSearchById) -> dict[str, Any]:
        """Each face of a stored image (or the one asked for) with its nearest other stored faces."""
        check_k(body.k, s.max_k, f"{s.env_prefix()}MAX_K")
        return await run_in_threadpool(service.search_faces_by_id, body)

    # The sorted ids of the store's generation when a paging started (as /stored_ids keeps them).
    sorted_ids: dict[str, Any] = {"generation": None, "ids": []}

    def current_ids() -> tuple[list[int], int]:
        store = service.collection.store
        generation = store.generation  # read first: a write in between shows in /faces_changes
        if sorted_ids["generation"] != (store.uuid, generation):
            sorted_ids.update(generation=(store.uuid, generation), ids=sorted(store.ids()))
        return sorted_ids["ids"], generation

    @app.post("/faces_descriptors", response_model=DescriptorsPage, responses=ERROR_RESPONSES)
    async def descriptors(body: DescriptorsBody) -> dict[str, Any]:
        """Every stored face's descriptor, a page of images at a time (ascending ids): what the
        people grouping loads. Then follow /faces_changes from the first page's generation."""

        def page() -> dict[str, Any]:
            ids, generation = current_ids()
            return service.descriptors_page(ids, generation, body)

        return await run_in_threadpool(page)

    @app.post(
        "/faces_changes",
        response_model=ChangesReply,
        responses={**ERROR_RESPONSES, 410: {"description": "The change log no longer reaches `since`"}},
    )
    async def changes(body: ChangesBody) -> dict[str, Any]:
        """The images added and deleted since a store generation, in order (410 once the log is
        trimmed past it: page through /faces_descriptors again)."""
        return await run_in_threadpool(service.changes, body)

    return app
