"""Wires OCR + the PostgreSQL text index to HTTP.

Not a FeatureService (there are no vectors to index): a small app of its own built from the kit's
pieces (settings, the safe decode path, error handlers, metrics, info routes, runner).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.common.app import add_unavailable_handler, create_service_app, read_upload
from services.common.errors import DatabaseUnavailable
from services.common.features.app import id_taken
from services.common.images import decode_image
from services.common.limits import check_k
from services.common.postgres.database import PostgresComponent, PostgresSettings
from services.common.schemas import ERROR_RESPONSES, ID_MAX, AddResult, DeleteResult, ErrorBody, ImageIdBody
from services.common.service import ServiceBase
from services.common.settings import ServiceSettings
from services.ocr.descriptor import DESCRIPTOR
from services.ocr.recognizer import Recognizer, TextLine
from services.ocr.store import COMPONENT, MIGRATIONS, Ranking, TextStore
from services.ocr.text import normalise


class OcrSettings(ServiceSettings):
    service_descriptor = DESCRIPTOR

    max_side: int = Field(
        2000, ge=64, description="Longer image sides are scaled down to this before OCR (recognition crops)"
    )
    det_side: int = Field(
        960,
        ge=64,
        description="Text detection sees the image with its long side scaled down to this (never enlarged)",
    )
    angle_classifier: bool = Field(
        False, description="Also classify each text line as upright or upside down (turned 180 degrees)"
    )
    min_confidence: float = Field(0.5, ge=0, le=1, description="Text lines recognised below this are dropped")
    threads: int = Field(
        1,
        ge=0,
        description="onnxruntime threads per recognition (0 = all cores; 1: the services share the cores)",
    )
    weight_trigram: float = Field(0.5, ge=0, description="Search score weight of trigram word similarity")
    weight_phonetic: float = Field(0.25, ge=0, description="Search score weight of Double Metaphone matches")
    weight_edit: float = Field(0.25, ge=0, description="Search score weight of Levenshtein word similarity")
    trigram_threshold: float = Field(
        0.3, ge=0, le=1, description="pg_trgm word-similarity threshold for trigram candidates"
    )
    candidates: int = Field(200, ge=1, description="Most candidates taken from each index before scoring")
    min_score: float = Field(0.25, ge=0, description="Search results scoring below this are left out")

    def ocr_summary(self) -> str:
        """The settings that decide OCR cost, in one line (benches)."""
        classifier = "with" if self.angle_classifier else "without"
        return (
            f"detection at long side <= {self.det_side}, recognition crops from <= {self.max_side}, "
            f"{classifier} angle classifier, {self.threads} thread(s)"
        )

    def ranking(self) -> Ranking:
        return Ranking(
            weight_trigram=self.weight_trigram,
            weight_phonetic=self.weight_phonetic,
            weight_edit=self.weight_edit,
            trigram_threshold=self.trigram_threshold,
            candidates=self.candidates,
            min_score=self.min_score,
        )


class TextLineModel(BaseModel):
    text: str
    box: list[list[float]] = Field(description="Four corners [x, y] in image pixels, clockwise from top-left")
    confidence: float


class ImageText(BaseModel):
    text: str = Field(description="The lines joined with newlines, top to bottom")
    lines: list[TextLineModel]


class TextQuery(BaseModel):
    text: str = Field(min_length=1, max_length=1000, description="What the picture should say")
    k: int = Field(10, ge=1, description="How many images to return at most")


class TextHit(BaseModel):
    image_id: int
    score: float = Field(description="0..1, higher is better (see docs/ocr.md for the formula)")
    text: str = Field(description="All the text recognised in the image")


class OcrService(ServiceBase):
    """The OCR engine and the text store, with their lifecycle."""

    description = "Text in images: OCR lines stored in PostgreSQL, fuzzy search by text."
    settings: OcrSettings

    def __init__(self, settings: OcrSettings, pg: PostgresSettings | None = None) -> None:
        super().__init__(settings)
        self.pg = PostgresComponent(pg or PostgresSettings(), {COMPONENT: MIGRATIONS}, "ambience-ocr")
        self.recognizer: Recognizer | None = None
        self._store: TextStore | None = None

    @property
    def store(self) -> TextStore:
        if self._store is None:
            raise DatabaseUnavailable("PostgreSQL is not connected yet (the service is starting)")
        return self._store

    def load_recognizer(self) -> None:
        s = self.settings
        self.recognizer = Recognizer(
            max_side=s.max_side,
            det_side=s.det_side,
            min_confidence=s.min_confidence,
            threads=s.threads,
            angle_classifier=s.angle_classifier,
        )

    def load(self) -> None:
        self.load_recognizer()
        self._store = TextStore(self.pg.open(), self.settings.ranking())

    def close(self) -> None:
        self.pg.close()

    def start(self) -> None:
        super().start()
        with contextlib.suppress(DatabaseUnavailable):  # /health says so meanwhile
            self.metrics.items.set(self.store.counts()["count"])

    def read(self, data: bytes) -> list[TextLine]:
        """Text lines with boxes in the uploaded image's pixels (decoded no larger than OCR needs)."""
        assert self.recognizer is not None
        decoded = decode_image(data, "RGB", limits=self.limits, draft_long_side=self.settings.max_side)
        lines = self.recognizer.read(decoded.image)
        (full_w, full_h), (w, h) = decoded.full_size, decoded.image.size
        if (full_w, full_h) == (w, h):
            return lines
        return [line.scaled(full_w / w, full_h / h) for line in lines]

    def info(self) -> dict[str, Any]:
        """/health and /stats fields; raises DatabaseUnavailable (503) while PostgreSQL is down."""
        out: dict[str, Any] = {
            "feature": "ocr",
            "model": self.recognizer.model_id if self.recognizer else None,
            "weights": "packaged",
            "postgres": self.pg.describe(),
        }
        out.update(self.store.counts())
        return out


def build_app(settings: OcrSettings | None = None, pg: PostgresSettings | None = None) -> FastAPI:
    service = OcrService(settings or OcrSettings(), pg)
    s = service.settings
    metrics = service.metrics
    app = create_service_app(service)
    add_unavailable_handler(app)
    responses = {**ERROR_RESPONSES, 503: {"model": ErrorBody, "description": "PostgreSQL unavailable"}}

    @app.post("/calculate_ocr_features", response_model=AddResult, responses=responses)
    async def calculate(
        image: Annotated[UploadFile, File(description="The image file")],
        image_id: Annotated[int, Form(ge=0, lt=ID_MAX, description="0 <= image_id < 2^63")],
    ) -> dict[str, int]:
        """Recognise the text of an image and store it under a new id (an image without text is
        stored as such and never returned by searches)."""
        data = await read_upload(image, s.max_upload_bytes)
        digest = hashlib.sha256(data).hexdigest()
        if await run_in_threadpool(service.store.contains, image_id):
            raise await id_taken(service.store, image_id)
        started = time.perf_counter()
        lines = await run_in_threadpool(service.read, data)
        metrics.extract_seconds.observe(time.perf_counter() - started)
        assert service.recognizer is not None
        model = service.recognizer.model_id
        if not await run_in_threadpool(service.store.add, image_id, lines, model, digest):
            raise await id_taken(service.store, image_id)
        metrics.items.inc()
        return {"image_id": image_id}

    @app.post("/delete_ocr_features", response_model=DeleteResult, responses=responses)
    async def delete(body: ImageIdBody) -> dict[str, Any]:
        """Delete an image's text. ``deleted`` is false when the id was not stored."""
        deleted = await run_in_threadpool(service.store.delete, body.image_id)
        if deleted:
            metrics.items.dec()
        return {"image_id": body.image_id, "deleted": deleted}

    @app.post("/get_image_text", response_model=ImageText, responses=ERROR_RESPONSES)
    async def get_image_text(
        image: Annotated[UploadFile, File(description="The image file")],
    ) -> dict[str, Any]:
        """The text lines of an image, with boxes and confidences (nothing is stored)."""
        data = await read_upload(image, s.max_upload_bytes)
        started = time.perf_counter()
        lines = await run_in_threadpool(service.read, data)
        metrics.extract_seconds.observe(time.perf_counter() - started)
        return {"text": "\n".join(line.text for line in lines), "lines": [line.as_dict() for line in lines]}

    @app.post("/get_stored_image_text", response_model=ImageText, responses=responses)
    async def get_stored_image_text(body: ImageIdBody) -> dict[str, Any]:
        """The text recognised when the image was added, with boxes and confidences (404 when the
        id is not stored)."""
        stored = await run_in_threadpool(service.store.get, body.image_id)
        if stored is None:
            raise HTTPException(404, f"image_id {body.image_id} is not stored")
        return {"text": stored.text if stored.has_text else "", "lines": stored.lines}

    @app.post("/ocr_search_by_text", response_model=list[TextHit], responses=responses)
    async def search(query: TextQuery) -> list[dict[str, Any]]:
        """Stored images whose text matches, best first: trigram similarity, Double Metaphone
        matches and Levenshtein distance combined (misspelt, phonetic and partial queries work)."""
        check_k(query.k, s.max_k, "AMBIENCE_OCR_MAX_K")
        if not normalise(query.text):
            raise HTTPException(422, "text has no letters or digits to search for")
        return await run_in_threadpool(service.store.search, query.text, query.k)

    return app
