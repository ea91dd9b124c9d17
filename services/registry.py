"""Every service ambience knows: name, module to run, default port.

``ambience serve`` starts each of these as its own process (``python -m <module>``). The gateway
finds them here too. A service whose module cannot be imported (its extra not installed) is
skipped by the runner and reported as unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    module: str
    port: int
    #: Python modules the service needs (from its pyproject extra); missing ones mark it unavailable.
    requires: tuple[str, ...] = ()
    #: "module:function" listing the weights files the service needs (services.common.models.WeightsFile),
    #: for ``ambience models fetch``; empty for services without model weights.
    weights: str = ""


SERVICES: dict[str, ServiceInfo] = {
    info.name: info
    for info in (
        ServiceInfo("phash", "services.phash", 33336, ("numba",)),
        ServiceInfo("color", "services.color", 33335, ("cv2",)),
        ServiceInfo(
            "global_features",
            "services.global_features",
            33334,
            ("torch", "timm"),
            weights="services.global_features.service:weights_files",
        ),
        ServiceInfo(
            "image_text",
            "services.image_text",
            33338,
            ("torch", "open_clip"),
            weights="services.image_text.service:weights_files",
        ),
        ServiceInfo(
            "captioner",
            "services.captioner",
            33340,
            ("torch", "open_clip"),
            weights="services.captioner.service:weights_files",
        ),
        ServiceInfo(
            "tagger",
            "services.tagger",
            33341,
            ("torch", "torchvision"),
            weights="services.tagger.service:weights_files",
        ),
    )
}
