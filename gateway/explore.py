"""Explore the collection: moments and the map, composed by the gateway.

Clustering and layout run inside the vector service that holds the vectors (the kit's
``/analysis/*`` routes, through :class:`gateway.sources.AnalysisSources`): the gateway never
downloads the vectors, it sends a small request and receives image ids. What only the gateway knows
is added here: capture times from its image facts (a moment never spans a longer gap than
``MOMENT_MAX_GAP_S``: gateway/moments.py). Duplicate groups are gateway/duplicates/.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.image_facts import ImageFacts
from gateway.moments import split_by_time
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources


class MomentsBody(BaseModel):
    granularity: float = Field(0.3, gt=0, le=1, description="clusters per image (kmeans)")
    source: str | None = Field(
        None, description="vector service (default: the first of EXPLORE_SOURCES enabled)"
    )
    method: Literal["kmeans", "density"] = Field("kmeans", description="kmeans, or density (DBSCAN, cosine)")
    eps: float = Field(0.2, gt=0, lt=2, description="density: cosine distance that makes neighbours")
    min_samples: int = Field(3, ge=1, le=1000, description="density: neighbours that make a core image")
    max_gap_s: float | None = Field(
        None,
        ge=0,
        description="split moments at capture-time gaps longer than this (default MOMENT_MAX_GAP_S)",
    )


class Explorer:
    """Moments and the map of the collection."""

    def __init__(self, settings: GatewaySettings, sources: AnalysisSources, facts: ImageFacts) -> None:
        self.settings = settings
        self.sources = sources
        self.facts = facts

    async def moments(self, body: MomentsBody) -> dict[str, Any]:
        source = await self.sources.resolve(body.source)
        reply = await self.sources.analyse(
            source, "moments", body.model_dump(include={"granularity", "method", "eps", "min_samples"})
        )
        gap = self.settings.moment_max_gap_s if body.max_gap_s is None else body.max_gap_s
        times = await run_in_threadpool(self.facts.capture_times) if gap > 0 else {}
        moments = []
        for cluster in reply["moments"]:
            members: list[int] = cluster["members"]
            for part in split_by_time(members, times, gap) if times else [members]:
                moments.append(part)
        moments.sort(key=lambda m: (-len(m), m[0]))
        return {
            "source": source,
            "method": body.method,
            "stale": reply["stale"],
            "moments": [
                {"moment": n, "representative": m[0], "size": len(m), "members": m}
                for n, m in enumerate(moments)
            ],
            "noise": reply["noise"],
        }

    async def map(self, source_name: str | None, granularity: float) -> dict[str, Any]:
        source = await self.sources.resolve(source_name)
        layout, moments = await asyncio.gather(
            self.sources.analyse(source, "map"),
            self.moments(MomentsBody(source=source, granularity=granularity)),
        )
        moment_of = {m: c["moment"] for c in moments["moments"] for m in c["members"]}
        return {
            "source": source,
            "stale": layout["stale"] or moments["stale"],
            "points": [{**p, "moment": moment_of.get(p["image_id"])} for p in layout["points"]],
        }
