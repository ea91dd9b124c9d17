"""The support package: launchers built from the registry, benches listed and runnable as modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess
from ambience_support.transforms import COPY_DETECTION, LOCAL_FEATURES_COPIES, variants
from bench.evaluate import benches
from bench.harness import parts_of
from services.registry import SERVICES


def test_launchers_run_each_registered_service_by_its_module_and_env_prefix(tmp_path: Path) -> None:
    for name, info in SERVICES.items():
        svc = ServiceProcess.registered(name, tmp_path / name)
        assert svc.module == info.module
        prefix = info.env_prefix
        assert svc.env[f"{prefix}DATA_DIR"] == str(tmp_path / name)
        assert svc.env[f"{prefix}PORT"] == str(svc.port)


def test_every_bench_script_is_listed_and_follows_the_convention() -> None:
    on_disk = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "__init__")
    assert sorted([*benches.BENCHES, *benches.SHARED]) == on_disk  # a script is listed, or shared
    assert benches.unlisted() == []
    for module in benches.BENCHES:
        source = (REPO / "bench" / f"{module}.py").read_text()
        assert module.endswith("_bench") and "--small" in source and "__main__" in source, module
        assert ast.get_docstring(ast.parse(source)), module
        for run in benches.runs(module):
            assert run.title and run.key([]) == f"bench.{run.name}", run


def test_a_harness_has_a_module_with_run_for_each_part_and_nothing_else() -> None:
    harnesses = {m: parts_of(m) for m in benches.BENCHES if parts_of(m) is not None}
    assert set(harnesses) == {"copy_recall_bench", "model_speed_bench", "scale_bench"}
    for module, parts in harnesses.items():
        package = REPO / "bench" / module.removesuffix("_bench")
        with_run = {
            p.stem
            for p in package.glob("*.py")
            if any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in ast.parse(p.read_text()).body)
        }
        assert parts is not None and with_run == set(parts), module


def test_no_module_imports_a_test_module() -> None:
    """Helpers shared by tests, benches and tools live in ambience_support, never in a test module."""
    importing = set()
    for folder in ("bench", "tests", "tools", "ambience_support"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if any(name == "tests" or name.startswith("tests.") for name in names):
                    importing.add(str(path.relative_to(REPO)))
    assert not importing, importing


@pytest.mark.parametrize("folder", ["bench", "ambience_support", "tools"])
def test_every_support_module_imports(folder: str) -> None:
    """A helper moved elsewhere leaves no bench or tool importing it from its old place (the benches'
    smallest runs import only some of them)."""
    failed = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            failed[module] = str(exc)
    assert not failed, failed


def test_bench_and_tools_import_the_project_without_editing_sys_path() -> None:
    for folder in ("bench", "tools"):
        for path in (REPO / folder).rglob("*.py"):
            assert "sys.path" not in path.read_text(), path


def test_transform_sets_are_deterministic_and_change_the_picture() -> None:
    from ambience_support.images import synthetic_image

    img = synthetic_image(5, (640, 480))  # larger than every thumbnail size
    for name, (transform, _) in LOCAL_FEATURES_COPIES.items():
        a, b = transform(img, np.random.default_rng(1)), transform(img, np.random.default_rng(1))
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
        assert a.size != img.size or not np.array_equal(np.asarray(a), np.asarray(img)), name
    for name, transform in COPY_DETECTION.items():
        out = transform(img)
        assert out.size != img.size or not np.array_equal(np.asarray(out), np.asarray(img)), name
    assert variants(img, 3) == variants(img, 3) and len(set(variants(img, 3).values())) == 4


def test_no_test_or_bench_module_imports_a_module_under_tests() -> None:
    """Helpers shared by tests and benches live in ambience_support; a module under tests/ is
    imported by pytest alone (conftest fixtures reach the tests without an import)."""
    offenders = []
    for folder in ("tests", "bench", "tools", "ambience_support"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert not offenders, offenders


def test_a_missing_browser_skips_the_page_tests_but_fails_them_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from ambience_support.browser import launch_browser

    monkeypatch.setenv("AMBIENCE_TEST_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"), launch_browser():
        pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"), launch_browser():
        pass
