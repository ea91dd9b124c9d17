"""Every service ambience knows, in one place: the packages listed in :data:`SERVICE_PACKAGES`.

Each package declares itself in its ``descriptor.py`` (``DESCRIPTOR``, a
:class:`services.common.descriptor.ServiceDescriptor`): name, default port, settings, routes,
extra, model weights. ``ambience serve`` starts each service as its own process
(``python -m <module>``); the gateway, the CLI, deploy/, the test stacks and bench/ read the same
descriptors. Reading the registry imports no heavy library. A service whose modules cannot be
imported (its extra not installed) is skipped by the runner and reported as unavailable.

What needs a service by its name lives here too, above the kit (which never imports the registry):
:func:`new_feature` and :func:`open_feature` (a feature without HTTP, for ``ambience import``,
benches and tests) and :func:`required_weights` (``ambience models fetch``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.descriptor import ServiceDescriptor

if TYPE_CHECKING:
    from services.common.features.feature import FeatureService
    from services.common.features.opening import OpenFeature
    from services.common.models.weights import WeightsFile
    from services.common.settings import ServiceSettings

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


class UnknownFeatureError(ValueError):
    """The name is not a registered service that keeps a FeatureStore."""


def new_feature(name: str, data_dir: Path | None = None, **settings: Any) -> FeatureService:
    """The registered service's feature object, not loaded, with settings from the environment;
    ``data_dir`` and keyword arguments override them (``ambience import`` writes its store with it
    and leaves the index to the running service)."""
    info = SERVICES.get(name)
    if info is None:
        raise UnknownFeatureError(f"unknown service {name!r}; known: {', '.join(sorted(SERVICES))}")
    feature_cls = info.feature_class()
    if feature_cls is None:
        raise UnknownFeatureError(
            f"service {name!r} keeps no FeatureStore (its descriptor names no feature class)"
        )
    if data_dir is not None:
        settings["data_dir"] = data_dir
    return feature_cls(info.settings_class()(**settings))


def open_feature(name: str, data_dir: Path | None = None, **settings: Any) -> OpenFeature:
    """Registered service ``name`` opened headless, as its app opens it at start-up (settings from
    the environment; ``data_dir`` and keyword arguments override them): compute, store and search
    features in-process. Close it (or use ``with``) to snapshot the index and release the store."""
    from services.common.features.opening import open_feature_object

    return open_feature_object(new_feature(name, data_dir, **settings))


def required_weights(service: str, settings: ServiceSettings | None = None) -> list[WeightsFile]:
    """Every weights file registered service ``service`` needs with its current settings (env),
    derived from the model spec of its descriptor.

    A descriptor may instead name a ``"module:function"`` listing its files (the download tests'
    fixture service, whose files come from a manifest)."""
    descriptor = SERVICES[service]
    if descriptor.weights:
        return list(descriptor.weights_function()(settings))
    if descriptor.model is None:
        return []
    settings_class = descriptor.settings_class()
    if not isinstance(settings, settings_class):
        settings = settings_class()
    return descriptor.model.weights_files(settings)
