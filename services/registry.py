"""Every service ambience knows, in one place: the packages listed in :data:`SERVICE_PACKAGES`.

Each package declares itself in its ``descriptor.py`` (``DESCRIPTOR``, a
:class:`services.common.descriptor.ServiceDescriptor`): name, default port, settings, routes,
extra, model weights. ``ambience serve`` starts each service as its own process
(``python -m <module>``); the gateway, the CLI, deploy/, the test stacks and bench/ read the same
descriptors. Reading the registry imports no heavy library. A service whose modules cannot be
imported (its extra not installed) is skipped by the runner and reported as unavailable.
"""

from __future__ import annotations

import importlib

from services.common.descriptor import ServiceDescriptor

#: Registering a service: add its package here (the order is the order of ``ambience serve``,
#: the settings tables and the gateway's fan-out).
SERVICE_PACKAGES = (
    "services.phash",
    "services.color",
    "services.local_features",
    "services.global_features",
    "services.image_text",
    "services.ocr",
    "services.captioner",
    "services.tagger",
    "services.faces",
)


def load_descriptor(package: str) -> ServiceDescriptor:
    """The ``DESCRIPTOR`` of ``<package>.descriptor``."""
    descriptor = importlib.import_module(f"{package}.descriptor").DESCRIPTOR
    if not isinstance(descriptor, ServiceDescriptor):
        raise TypeError(f"{package}.descriptor.DESCRIPTOR is not a ServiceDescriptor")
    return descriptor


SERVICES: dict[str, ServiceDescriptor] = {d.name: d for d in map(load_descriptor, SERVICE_PACKAGES)}
