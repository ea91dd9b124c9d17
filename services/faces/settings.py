"""The faces service's settings: one typed object, read from ``AMBIENCE_FACES_*``.

Its own module so weights.py (``ambience models list faces``) can read it without importing the
service's wiring.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import ServiceSettings
from services.faces.descriptor import DESCRIPTOR
from services.faces.detection import DetectionParams
from services.faces.extraction import MAX_FACES, AnalysisParams


class FacesSettings(ServiceSettings):
    service_descriptor = DESCRIPTOR

    weights_dir: str = Field(
        "",
        description="Folder holding dlib's shape_predictor_5_face_landmarks.dat and "
        "dlib_face_recognition_resnet_model_v1.dat (empty: the installed face_recognition_models package)",
    )
    max_side: int = Field(
        1600, ge=64, le=65535, description="Photos are analysed with their long side at most this (px)"
    )
    min_face_size: float = Field(
        40, ge=8, description="Smallest face kept (box side in px of the analysed photo)"
    )
    min_face_fraction: float = Field(
        0.05,
        ge=0.01,
        le=1,
        description="... and at least this fraction of the analysed photo's long side (bounds the "
        "detector's work: it runs at most 73/fraction px a side)",
    )
    min_score: float = Field(0.0, description="HOG detector score threshold (dlib's adjust_threshold)")
    fallback: Literal["none", "upsample", "cnn"] = Field(
        "none",
        description="Slower detection pass when the first finds no face: none, upsample (HOG on the "
        "detection image upsampled once, ~3x the first pass) or cnn (dlib's CNN detector, faces >= "
        "twice the minimum, ~20x); none: on faces-dev neither found a face the first pass missed",
    )
    max_faces: int = Field(
        100, ge=1, le=MAX_FACES, description="Faces kept per photo, largest first (a crowd keeps its largest)"
    )
    descriptor_batch: int = Field(
        8, ge=1, le=64, description="Faces described per batch (bounds memory and how long one holds the GIL)"
    )
    time_budget_s: float = Field(
        10.0,
        gt=0,
        description="Per photo: no new batch of descriptors starts after this many seconds (the faces "
        "described so far are kept, the rest dropped and counted)",
    )

    def analysis_params(self) -> AnalysisParams:
        return AnalysisParams(
            detection=DetectionParams(
                min_face_size=self.min_face_size,
                min_face_fraction=self.min_face_fraction,
                min_score=self.min_score,
                fallback=self.fallback,
            ),
            max_faces=self.max_faces,
            batch=self.descriptor_batch,
            time_budget_s=self.time_budget_s,
        )
