"""``/reverse_search`` through :class:`~gateway.reverse_search.ReverseSearch`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile

from gateway.reverse_search import DuplicateSearchUnavailable, QueryRejected, ReverseSearch
from gateway.routes.uploads import held_image
from services.common.limits import MemoryBudget

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def add_routes(app: FastAPI, search: ReverseSearch, max_upload_bytes: int, inflight: MemoryBudget) -> None:
    @app.post("/reverse_search", tags=["gateway"])
    async def reverse_search(
        image: Annotated[UploadFile, File(description="The query image")],
        find_duplicate: Annotated[
            str, Form(description='"1": duplicate mode; "0" (default): similar images')
        ] = "0",
    ) -> dict[str, Any]:
        """Duplicate mode: ``{"duplicate": [{"image_id", "distance"}]}``, or ``{}`` when there is none.
        Normal mode: each search service's top results (``phash_res``, ``global_features_res``,
        ``local_features_res``, ``color_res``, ``image_text_res``), ``unified_res`` fused by weighted
        reciprocal rank, and ``failed``: the services that contributed nothing and why."""
        async with held_image(image, max_upload_bytes, inflight) as data:
            try:
                if find_duplicate.strip().lower() in TRUE_VALUES:
                    return await search.duplicates(data)
                return await search.similar(data)
            except DuplicateSearchUnavailable as exc:
                raise HTTPException(503, str(exc)) from exc
            except QueryRejected as exc:
                raise HTTPException(exc.status_code, {"message": str(exc), "services": exc.details}) from exc
