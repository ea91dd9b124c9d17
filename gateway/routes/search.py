"""``/reverse_search`` through :class:`~gateway.reverse_search.ReverseSearch`."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Response, UploadFile
from prometheus_client import CollectorRegistry, Counter

from gateway.reverse_search import DuplicateSearchUnavailable, QueryRejected, ReverseSearch
from gateway.routes.uploads import for_services, held_image
from services.common.images import DecodeLimits
from services.common.limits import MemoryBudget

log = logging.getLogger("ambience.gateway")

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
#: Names the services a normal-mode reply had to leave out, and why: ``color=failed: ...; phash=...``.
FAILED_HEADER = "X-Ambience-Failed"
_NOT_IN_HEADER = re.compile(r"[^\x20-\x7e]|;")


def failed_header(failed: dict[str, str]) -> str:
    """One header line (printable ASCII, ``;`` between services) from service -> reason."""
    return "; ".join(f"{name}={_NOT_IN_HEADER.sub(' ', why)[:200]}" for name, why in sorted(failed.items()))


def add_routes(
    app: FastAPI,
    search: ReverseSearch,
    max_upload_bytes: int,
    inflight: MemoryBudget,
    registry: CollectorRegistry,
    limits: DecodeLimits,
) -> None:
    left_out = Counter(
        "ambience_gateway_search_left_out",
        "Normal-mode reverse searches that had to leave a service out",
        ["service"],
        registry=registry,
    )

    @app.post("/reverse_search", tags=["gateway"])
    async def reverse_search(
        response: Response,
        image: Annotated[UploadFile, File(description="The query image")],
        find_duplicate: Annotated[
            str, Form(description='"1": duplicate mode; "0" (default): similar images')
        ] = "0",
    ) -> dict[str, Any]:
        """Duplicate mode: ``{"duplicate": [{"image_id", "distance"}]}``, or ``{}`` when there is none.
        Normal mode: each search service's top results (``phash_res``, ``global_features_res``,
        ``local_features_res``, ``color_res``, ``image_text_res``), ``unified_res`` fused by weighted
        reciprocal rank: only lists, the upstream shape. The services that contributed nothing are
        named with the reason in the ``X-Ambience-Failed`` header (also logged, and counted in
        /metrics)."""
        async with held_image(image, max_upload_bytes, inflight) as upload:
            data = await for_services(upload, limits) or upload  # a video, HEIC or AVIF: a JPEG still
            try:
                if find_duplicate.strip().lower() in TRUE_VALUES:
                    return await search.duplicates(data)
                similar = await search.similar(data)
            except DuplicateSearchUnavailable as exc:
                raise HTTPException(503, str(exc)) from exc
            except QueryRejected as exc:
                raise HTTPException(exc.status_code, {"message": str(exc), "services": exc.details}) from exc
        if similar.failed:
            response.headers[FAILED_HEADER] = failed_header(similar.failed)
            for name in similar.failed:
                left_out.labels(name).inc()
            log.warning("reverse search without %s", failed_header(similar.failed))
        return similar.reply
