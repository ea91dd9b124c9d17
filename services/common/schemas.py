"""Request and response models of the standard feature-service routes (docs/api.md)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Image ids are 0 <= id < 2^63: an 8-byte big-endian key in every store, a bigint in PostgreSQL.
ID_MAX = 2**63

#: A stored image's id wherever a body names one (a negative or 64-bit-overflowing id is a 422).
ImageId = Annotated[int, Field(ge=0, lt=ID_MAX)]


class NoParams(BaseModel):
    """A service without query parameters of its own."""

    model_config = ConfigDict(allow_inf_nan=False)


class SearchParams(BaseModel):
    """Exactly one of ``k`` or ``distance_threshold`` (finite: NaN and infinity get 422)."""

    model_config = ConfigDict(allow_inf_nan=False)

    k: int | None = Field(None, ge=1, description="How many nearest images to return")
    distance_threshold: float | None = Field(
        None, ge=0, description="Return every image with distance <= this (instead of k)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchParams:
        if (self.k is None) == (self.distance_threshold is None):
            raise ValueError("give exactly one of k or distance_threshold")
        return self


class ImageIdBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: ImageId = Field(description="Image id, 0 <= id < 2^63")


#: Ids one /stored_ids page may hold.
MAX_STORED_IDS_PAGE = 100_000


class StoredIdsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: ImageId | None = Field(
        None, description="Only ids above this one (the last id of the previous page)"
    )
    limit: int = Field(10_000, ge=1, le=MAX_STORED_IDS_PAGE, description="At most this many ids")


class StoredIds(BaseModel):
    image_ids: list[int] = Field(description="Stored ids above ``after``, ascending")
    count: int = Field(description="Images stored in all")


class AddResult(BaseModel):
    image_id: int


class DeleteResult(BaseModel):
    image_id: int
    deleted: bool


class SimilarImage(BaseModel):
    image_id: int
    distance: float | int


class ErrorBody(BaseModel):
    detail: Any


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown image id"},
    409: {"model": ErrorBody, "description": "Image id already stored"},
    413: {"model": ErrorBody, "description": "Upload or image too large"},
    415: {"model": ErrorBody, "description": "Unsupported image format"},
    422: {"model": ErrorBody, "description": "Invalid image or parameters"},
}
