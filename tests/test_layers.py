"""Who may import whom (docs/architecture.md, "The house"): every module's imports, the lazy ones
inside functions too, held to the layers. A module that reaches up (the kit into the registry of
services built on it, a service into the gateway) or into PostgreSQL where nothing chose it fails
here, naming the line; so does an import circle between any two modules."""

from __future__ import annotations

import ast
from pathlib import Path

from ambience_support.photos import REPO

SERVICES = sorted(
    p.name for p in (REPO / "services").iterdir() if p.name != "common" and (p / "descriptor.py").exists()
)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            out.append((node.lineno, base))
    return out


def violations(folder: str, forbidden: tuple[str, ...], allowed_files: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        name = str(path.relative_to(REPO))
        if any(name.startswith(a) for a in allowed_files):
            continue
        for line, module in imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{name}:{line} imports {module}")
    return found


def test_the_kit_never_reaches_up() -> None:
    above = ("services.registry", "gateway", "ambience", "ambience_support", "bench", "tests")
    assert violations("services/common", above + tuple(f"services.{s}" for s in SERVICES)) == []


def test_the_engine_and_the_model_layer_keep_to_their_floors() -> None:
    assert (
        violations("services/common/features", ("services.common.models", "services.common.postgres")) == []
    )
    assert violations("services/common/models", ("services.common.postgres",)) == []
    root = [p for p in (REPO / "services/common").glob("*.py")]
    below = ("services.common.features", "services.common.models", "services.common.postgres")
    bad = [
        f"{p.name}:{line} imports {module}"
        for p in root
        if p.name != "runner.py"  # builds the feature app of a service that names no app of its own
        for line, module in imports(p)
        if any(module == b or module.startswith(b + ".") for b in below)
    ]
    assert bad == []


def test_postgresql_is_imported_only_where_it_is_chosen() -> None:
    """The kit's root, engine and model layer, and every service but OCR (its text index lives in
    PostgreSQL), never import it: a service that keeps its features in LMDB starts without the
    driver."""
    pg = ("services.common.postgres", "psycopg2")
    assert violations("services/common", pg, allowed_files=("services/common/postgres/",)) == []
    for service in SERVICES:
        if service != "ocr":
            assert violations(f"services/{service}", pg) == [], service


def test_services_know_only_the_kit() -> None:
    for service in SERVICES:
        others = tuple(f"services.{s}" for s in SERVICES if s != service)
        forbidden = ("gateway", "ambience", "ambience_support", "bench", "tests", "services.registry")
        assert violations(f"services/{service}", forbidden + others) == [], service


def test_the_gateway_and_the_command_line_never_import_tests_or_benches() -> None:
    assert violations("gateway", ("ambience", "ambience_support", "bench", "tests")) == []
    assert violations("ambience", ("ambience_support", "bench", "tests")) == []


ROOMS = ("services", "gateway", "ambience", "ambience_support", "bench", "tools")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports (``from pkg import mod`` names mod)."""
    paths = {module_name(p): p for room in ROOMS for p in (REPO / room).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                targets.update(n for n in names if n in paths)
        targets.update(module for _, module in imports(path) if module in paths)
        graph[name] = targets - {name}
    return graph


def test_no_module_imports_itself_back_through_others() -> None:
    """No import circle between any two modules, lazy and type-checking imports included: a circle
    means neither module can be read (or moved) without the other."""
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []
