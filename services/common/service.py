"""The base every service object shares, whatever it keeps: feature services (an LMDB store and a
FAISS index), services that keep nothing (captioner, tagger) and OCR (PostgreSQL).

A service object holds its settings, the kit's decode limits and its Prometheus metrics, and has
one lifecycle: ``start()`` (load models, open data; run in the thread pool before the app takes
requests) and ``stop()`` (close them at shutdown). ``health()`` and ``stats()`` are what /health
and /stats answer. :func:`services.common.app.create_service_app` turns any of them into an app
with the same lifespan, error handling, metrics and info routes.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from services.common.images import DecodedImage, DecodeLimits, Mode, decode_image
from services.common.metrics import ServiceMetrics
from services.common.settings import ServiceSettings


class ServiceBase:
    """Settings, decoding, metrics and lifecycle of one service."""

    #: One line about the service for its Swagger page (default: "The <name> service of ambience.").
    description: ClassVar[str] = ""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.limits = DecodeLimits.from_settings(settings)
        self.metrics = ServiceMetrics(settings.service_name)
        self.started_at: float | None = None

    @property
    def name(self) -> str:
        return self.settings.service_name

    def app_description(self) -> str:
        return self.description or f"The {self.name} service of ambience."

    def decode(
        self,
        data: bytes,
        mode: Mode = "RGB",
        draft_size: int | None = None,
        draft_long_side: int | None = None,
    ) -> DecodedImage:
        """The kit's one decode path (ImageError -> a 4xx naming the problem)."""
        return decode_image(
            data, mode, limits=self.limits, draft_size=draft_size, draft_long_side=draft_long_side
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Load models (raise StartupError / WeightsMissingError to refuse to start)."""

    def close(self) -> None:
        """Release what ``load`` took."""

    def start(self) -> None:
        """Everything before the first request: by default ``load``; services with data open it."""
        self.load()
        self.started_at = time.time()

    def stop(self) -> None:
        """Everything at shutdown: by default ``close``."""
        self.close()

    # -- what /health, /stats and /metrics show -------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Extra /health and /stats fields (model, weights source)."""
        return {}

    def health(self) -> dict[str, Any]:
        return {"service": self.name, **self.info()}

    def stats(self) -> dict[str, Any]:
        return self.health()

    def refresh_metrics(self) -> None:
        """Bring gauges up to date before /metrics renders them."""
