"""Reading an uploaded image in a gateway route."""

from __future__ import annotations

from fastapi import HTTPException, UploadFile

from services.common.app import read_upload


async def read_image(image: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes (413 above ``max_bytes``, 422 when empty)."""
    data = await read_upload(image, max_bytes)
    if not data:
        raise HTTPException(422, "the image file is empty")
    return data
