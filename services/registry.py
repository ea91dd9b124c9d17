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

    def settings_class(self) -> type:
        module, _, name = self.settings.partition(":")
        return getattr(importlib.import_module(module), name)


SERVICES: dict[str, ServiceInfo] = {
    info.name: info
    for info in (
        ServiceInfo("phash", "services.phash", 33336, "services.phash.service:PhashSettings", ("numba",)),
        ServiceInfo("color", "services.color", 33335, "services.color.service:ColorSettings", ("cv2",)),
    )
}
