"""Reading an uploaded image or video in a gateway route, holding it within the in-flight budget, and
the still the services get for a video, HEIC or AVIF (gateway/media.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from gateway.media import still_for_services
from services.common.app import read_upload
from services.common.images import DecodeLimits, identify
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
    empty or not an image or video we take (decided here from the header, once, before any service is
    asked); 503 with Retry-After when the uploads already held fill the in-flight budget."""
    data = await read_image(image, max_bytes)
    identify(data)
    with inflight.reserve(len(data)):
        yield data


async def for_services(data: bytes, limits: DecodeLimits) -> bytes | None:
    """The still the services get instead of ``data`` when it is a video, HEIC or AVIF (decoded in a
    worker thread; 4xx when it cannot be, 503 when the gateway's decode budget is full); None when
    they get ``data`` itself."""
    return await run_in_threadpool(still_for_services, data, limits)
