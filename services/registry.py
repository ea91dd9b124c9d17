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


SERVICES: dict[str, ServiceInfo] = {
    info.name: info
    for info in (
        ServiceInfo("phash", "services.phash", 33336, ("numba",)),
        ServiceInfo("color", "services.color", 33335, ("cv2",)),
        ServiceInfo("local_features", "services.local_features", 33333, ("cv2", "torch", "kornia")),
    )
}
