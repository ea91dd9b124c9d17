"""What a service declares about itself, once: the service descriptor.

Each service package has a ``descriptor.py`` holding one :class:`ServiceDescriptor` named
``DESCRIPTOR``; ``services/registry.py`` lists the packages. Everything else that needs to know a
service (its settings class, the runner, the gateway's upstream table and result keys, the CLI's
install hints, deploy/, the test stacks and bench/) reads it from there.

A descriptor is light on purpose: classes and functions are named as ``"module:attribute"``
strings, so reading the registry imports no torch, cv2 or numba; they are imported on demand.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol


class ModelDeclaration(Protocol):
    """A service's model as its descriptor declares it: plain data from which its weights files
    follow (:class:`services.common.models.spec.ModelSpec`, the one implementation; the descriptor
    names it through this protocol so that it stays below the model layer)."""

    def weights_files(self, settings: Any) -> list[Any]: ...


def load_attr(spec: str) -> Any:
    """``"package.module:name"`` -> the attribute (imports the module)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:attribute', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def camel_case(name: str) -> str:
    """``local_features`` -> ``LocalFeatures``: how a service's class names begin."""
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass(frozen=True)
class ServiceDescriptor:
    """One service: how it is named, served, installed, routed and loaded.

    A descriptor states what is particular to its service; the rest follows from the name by
    convention (:meth:`__post_init__`): the package ``services.<name>``, its ``service`` module,
    the settings class ``<Name>Settings`` there, the env prefix ``AMBIENCE_<NAME>_`` and, for a
    service with a feature class, the route names ``<name>_features`` (store) and ``<name>``
    (search). Classes and functions of the service module may be named bare (``"PhashFeature"``).
    """

    name: str
    #: Default TCP port (``AMBIENCE_<NAME>_PORT`` overrides it).
    port: int
    #: The pip extra that installs the service's dependencies (``pip install -e '.[<extra>]'``);
    #: empty when the kit's own dependencies suffice.
    extra: str
    #: The service's settings class (a ServiceSettings subclass); default ``<Name>Settings``.
    settings: str = ""
    #: The service's FeatureService subclass; empty for services that keep no FeatureStore
    #: (captioner, tagger, ocr). Used for the default app and for headless use (``open_feature``,
    #: ``ambience import``).
    feature: str = ""
    #: The function building the FastAPI app from settings (``f(settings) -> FastAPI``); default:
    #: the service module's ``build_app`` if it has one, else the kit's app around ``feature``.
    app: str = ""
    #: ``/calculate_<store>`` and ``/delete_<store>``; None for services that store nothing. Default
    #: for a feature service: ``<name>_features`` (``<name>`` when the name already ends so).
    store: str | None = None
    #: ``/<search>_get_similar_images_by_id`` and ``..._by_image_buffer``; None: no image search.
    #: Default for a feature service: ``<name>``.
    search: str | None = None
    #: Further routes of the service that the gateway proxies as they are.
    extra_routes: tuple[str, ...] = ()
    #: The route that retrains the service on its stored data (``ambience train``); not proxied.
    train_route: str | None = None
    #: Python modules the extra provides; a missing one marks the service unavailable.
    requires: tuple[str, ...] = ()
    #: The model the service runs (services.common.models.spec.ModelSpec, plain data): the weights
    #: files ``ambience models fetch`` downloads and the weights the service loads derive from it.
    #: None: the service runs no model.
    model: ModelDeclaration | None = None
    #: "module:function" listing the weights files instead (services.common.models.weights.WeightsFile),
    #: for a service whose files no model spec describes: faces (its weights ship in a package, so
    #: `ambience models list` shows them and nothing is fetched) and the download tests' fixture.
    weights: str = ""
    #: The package run as ``python -m <module>``; default ``services.<name>``.
    module: str = field(default="")

    def __post_init__(self) -> None:
        def derive(attribute: str, value: object) -> None:
            object.__setattr__(self, attribute, value)

        derive("module", self.module or f"services.{self.name}")
        derive("settings", self._qualified(self.settings or f"{camel_case(self.name)}Settings"))
        derive("feature", self._qualified(self.feature))
        derive("app", self._qualified(self.app))
        if self.feature:
            conventional_store = self.name if self.name.endswith("_features") else f"{self.name}_features"
            derive("store", self.store or conventional_store)
            derive("search", self.search or self.name)

    def _qualified(self, attribute: str) -> str:
        """A bare name -> ``"<module>.service:<name>"``; ``"module:name"`` and ``""`` as they are."""
        return f"{self.module}.service:{attribute}" if attribute and ":" not in attribute else attribute

    # -- derived names ------------------------------------------------------------------------

    @property
    def env_prefix(self) -> str:
        """Prefix of the service's environment variables."""
        return f"AMBIENCE_{self.name.upper()}_"

    @property
    def default_port(self) -> int:
        return self.port

    @property
    def result_key(self) -> str | None:
        """Key of this service's list in the gateway's ``/reverse_search`` reply."""
        return f"{self.name}_res" if self.search else None

    @property
    def install_hint(self) -> str:
        return f"pip install -e '.[{self.extra}]'" if self.extra else "pip install -e ."

    def routes(self) -> list[str]:
        """The routes the gateway proxies to this service."""
        out = []
        if self.store:
            out += [f"/calculate_{self.store}", f"/delete_{self.store}"]
        if self.search:
            out += [
                f"/{self.search}_get_similar_images_by_id",
                f"/{self.search}_get_similar_images_by_image_buffer",
            ]
        return out + list(self.extra_routes)

    # -- what the strings name (these import the service) ---------------------------------------

    def settings_class(self) -> type:
        return load_attr(self.settings)

    def feature_class(self) -> type | None:
        return load_attr(self.feature) if self.feature else None

    def weights_function(self) -> Any:
        return load_attr(self.weights) if self.weights else None
