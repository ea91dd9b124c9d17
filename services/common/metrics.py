"""Prometheus metrics of one service, in a registry of its own (several apps may share a process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        self.requests = Counter(
            "ambience_requests", "HTTP requests", ["route", "status"], registry=self.registry
        ).labels  # called with route/status
        self.latency = Histogram(
            "ambience_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.extract_seconds = Histogram(
            "ambience_extract_seconds", "Feature extraction time per image", registry=self.registry
        )
        self.items = Gauge("ambience_items", "Images stored", registry=self.registry)
        info = Gauge("ambience_service_info", "Service identity", ["service"], registry=self.registry)
        info.labels(**labels).set(1)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
