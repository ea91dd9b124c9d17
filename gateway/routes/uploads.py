"""Reading an uploaded image in a gateway route, and holding it within the in-flight budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import HTTPException, UploadFile

from services.common.app import read_upload
from services.common.images import open_image
from services.common.limits import MemoryBudget


async def read_image(image: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes (413 above ``max_bytes``, 422 when empty)."""
    data = await read_upload(image, max_bytes)
    if not data:
        raise HTTPException(422, "the image file is empty")
    return data


@asynccontextmanager
async def held_image(image: UploadFile, max_bytes: int, inflight: MemoryBudget) -> AsyncIterator[bytes]:
    """The upload's bytes, held while the block runs: 413 above ``max_bytes``; 422/415 when it is
    empty or not an image (decided here from the header, once, before any service is asked); 503 with
    Retry-After when the uploads already held fill the in-flight budget."""
    data = await read_image(image, max_bytes)
    open_image(data)
    with inflight.reserve(len(data)):
        yield data
