"""The service registry: one descriptor per service, and everything else derived from it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib

import pytest

from ambience_support.photos import REPO
from gateway.settings import UPSTREAMS, GatewaySettings
from services.common.descriptor import ServiceDescriptor
from services.common.runner import build_app
from services.registry import SERVICES

HEAVY = ("torch", "cv2", "numba", "timm", "open_clip", "kornia", "onnxruntime", "rapidocr_onnxruntime")


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in SERVICES[name].requires)


def test_reading_the_registry_imports_no_heavy_library() -> None:
    code = (
        f"import sys, services.registry, gateway.settings;print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_each_default_port_is_written_in_one_python_file_of_services_and_gateway() -> None:
    files = [p for d in ("services", "gateway") for p in (REPO / d).rglob("*.py")]
    texts = {p: p.read_text() for p in files}
    for name, info in SERVICES.items():
        holders = [p.relative_to(REPO) for p, t in texts.items() if re.search(rf"\b{info.port}\b", t)]
        assert [str(p) for p in holders] == [f"services/{name}/descriptor.py"], name


def test_install_hints_name_extras_that_exist() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, info in SERVICES.items():
        assert info.extra in extras, f"{name}: extra {info.extra!r} is not in pyproject.toml"
        assert info.install_hint == f"pip install -e '.[{info.extra}]'"
    assert SERVICES["global_features"].install_hint == "pip install -e '.[global]'"


def test_the_gateway_table_is_the_registry() -> None:
    assert list(UPSTREAMS) == list(SERVICES)
    assert GatewaySettings().services == list(SERVICES)
    keys = {name: u.result_key for name, u in UPSTREAMS.items() if u.result_key}
    assert keys == {
        n: f"{n}_res" for n in ("phash", "color", "local_features", "global_features", "image_text", "faces")
    }
    assert UPSTREAMS["image_text"].routes() == [
        "/calculate_image_text_features",
        "/delete_image_text_features",
        "/image_text_features_get_similar_images_by_id",
        "/image_text_features_get_similar_images_by_image_buffer",
        "/image_text_features_get_similar_images_by_text",
    ]


@pytest.mark.parametrize("name", list(SERVICES))
def test_settings_features_and_app_agree_with_the_descriptor(name: str) -> None:
    info = SERVICES[name]
    if not installed(name):
        pytest.skip(f"{name}: its extra is not installed")
    settings_cls = info.settings_class()
    assert settings_cls.service_name == name
    assert settings_cls.default_port == info.port
    assert settings_cls.env_prefix() == info.env_prefix
    feature_cls = info.feature_class()
    if feature_cls is not None:
        assert (feature_cls.store_route, feature_cls.search_route) == (info.store, info.search)
    app = build_app(info, settings_cls())  # routes only: models load in the lifespan
    served = {getattr(route, "path", None) for route in app.routes}
    wanted = set(info.routes()) | ({info.train_route} if info.train_route else set())
    assert wanted <= served, wanted - served
    if info.weights:
        assert callable(info.weights_function())


def test_a_descriptor_derives_the_conventional_names_from_the_service_name() -> None:
    plain = ServiceDescriptor(name="sketch", port=1, extra="", feature="SketchFeature")
    assert plain.module == "services.sketch"
    assert plain.settings == "services.sketch.service:SketchSettings"
    assert plain.feature == "services.sketch.service:SketchFeature"
    assert (plain.store, plain.search, plain.env_prefix) == ("sketch_features", "sketch", "AMBIENCE_SKETCH_")
    named = ServiceDescriptor(name="edge_features", port=1, extra="", feature="x.y:Edges", search="edges")
    assert named.settings == "services.edge_features.service:EdgeFeaturesSettings"
    assert (named.feature, named.store, named.search) == ("x.y:Edges", "edge_features", "edges")
    # Without a feature class nothing is stored or searched unless the descriptor says so.
    storeless = ServiceDescriptor(name="notes", port=1, extra="", extra_routes=("/get_notes",))
    assert (storeless.store, storeless.search, storeless.routes()) == (None, None, ["/get_notes"])
