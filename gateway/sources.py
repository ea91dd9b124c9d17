"""The vector services the gateway analyses through their ``/analysis/*`` routes (the kit's
services/common/features/analysis_routes.py): which one answers (the one named, else the first of
``EXPLORE_SOURCES`` that is up) and what a call to it means (a result, 202 with progress, or 503
naming the service). Moments, the map and the similar-shot groups all ask through here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.proxy import ServiceClients
from gateway.runner_marks import RunnerMarks
from gateway.settings import GatewaySettings, Upstream

#: Services whose stored vectors the kit's analysis routes serve (one vector per image).
ANALYSABLE = ("image_text", "global_features", "color", "phash")
#: How long the default source's choice (the first default that answers /health) is kept.
DEFAULT_SOURCE_TTL_S = 5.0


class SourceUnavailable(Exception):
    """A service a reply depends on did not answer (HTTP 503, naming it)."""


class Running(Exception):
    """The service is still computing (HTTP 202 with its progress)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("running")
        self.body = body


class AnalysisSources:
    """The analysable services among ``enabled``, called through ``clients``."""

    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        enabled: list[Upstream],
        marks: RunnerMarks | None = None,
    ) -> None:
        """``marks``: the services ``ambience serve`` could not start (their model weights are
        missing): never the default source, and named when asked for."""
        self.settings = settings
        self.clients = clients
        self.enabled = {u.name for u in enabled}
        self.marks = marks
        self._default: str | None = None
        self._default_checked = 0.0

    def _marked(self) -> frozenset[str]:
        return self.marks.marked() if self.marks is not None else frozenset()

    def source(self, requested: str | None) -> str:
        """The vector service to analyse: ``requested`` (422 when it cannot be), else the default."""
        marked = self._marked()
        if requested is not None:
            if requested not in ANALYSABLE:
                raise ValueError(f"source must be one of {', '.join(ANALYSABLE)}, not {requested!r}")
            if requested not in self.enabled:
                raise SourceUnavailable(f"source {requested} is not enabled (AMBIENCE_GATEWAY_SERVICES)")
            if requested in marked:
                why = self._why(requested)
                raise SourceUnavailable(
                    f"source {requested} is not running: ambience serve could not start it ({why})"
                )
            return requested
        candidates = self._default_candidates()
        if candidates:
            return candidates[0]
        defaults = self.settings.explore_sources
        not_running = [n for n in defaults if n in marked and n in self.enabled]
        others = [n for n in ANALYSABLE if n in self.enabled and n not in marked and n not in defaults]
        problem = (
            "ambience serve could not start "
            + ", ".join(f"{n} ({self._why(n)})" for n in not_running)
            + ". Fetch missing weights with `ambience models fetch` and restart, or"
            if not_running
            else "none is enabled;"
        )
        raise SourceUnavailable(
            f"no default source (AMBIENCE_GATEWAY_EXPLORE_SOURCES: {', '.join(defaults)}) can answer: "
            f"{problem} name another source" + (f" ({', '.join(others)})" if others else "")
        )

    def _default_candidates(self) -> list[str]:
        """The default sources, in their order, that are enabled and not marked unavailable."""
        marked = self._marked()
        return [
            n
            for n in self.settings.explore_sources
            if n in self.enabled and n in ANALYSABLE and n not in marked
        ]

    def _why(self, name: str) -> str:
        reason = self.marks.reason(name) if self.marks is not None else None
        return reason or "marked unavailable"

    async def resolve(self, requested: str | None) -> str:
        """``requested``, else the first default source that answers its /health (a service without
        its model weights is enabled but down: moments then come from the next one; one the runner
        marked unavailable is not asked). When none answers, the first enabled one, whose 503 names
        it. Checked at most every few seconds."""
        if requested is not None:
            return self.source(requested)
        candidates = self._default_candidates()
        if not candidates:
            return self.source(None)  # raises, naming the setting
        now = time.monotonic()
        if self._default is not None and now - self._default_checked < DEFAULT_SOURCE_TTL_S:
            return self._default
        checks = await asyncio.gather(*(self.clients.health(n) for n in candidates))
        chosen = next((n for n, c in zip(candidates, checks, strict=True) if c.ok), candidates[0])
        self._default, self._default_checked = chosen, now
        return chosen

    async def listing(self) -> dict[str, Any]:
        """What a page offers to choose from: ``default`` (the source used when none is named, or
        null when none can answer) and ``sources``, each enabled analysable service with whether it
        ``runs`` and, when not, ``why`` (``ambience serve`` could not start it)."""
        marked = self._marked()
        try:
            default: str | None = await self.resolve(None)
        except SourceUnavailable:
            default = None
        return {
            "default": default,
            "sources": [
                {"name": n, "runs": n not in marked, "why": self._why(n) if n in marked else None}
                for n in ANALYSABLE
                if n in self.enabled
            ],
        }

    def has_default(self) -> bool:
        try:
            self.source(None)
        except SourceUnavailable:
            return False
        return True

    async def analyse(self, source: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``/analysis/<path>`` of ``source``: its result, :class:`Running` while it computes,
        :class:`SourceUnavailable` when it cannot answer."""
        result = await self.clients.call(source, f"/analysis/{path}", json=body or {})
        if result.status_code == 202:
            raise Running({"status": "running", "source": source, **(result.body or {})})
        if not result.ok:
            raise SourceUnavailable(f"service {source} could not answer /analysis/{path}: {result.detail}")
        return result.body
