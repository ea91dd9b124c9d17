"""The docs stay true to the code."""

from __future__ import annotations

import re

from ambience.settings import settings_markdown
from ambience_support.photos import REPO


def test_readme_settings_table_matches_the_code() -> None:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- settings:start -->\n(.*)\n<!-- settings:end -->", readme, re.S)
    assert found, "README.md lost its settings markers"
    assert found.group(1).strip() == settings_markdown().strip(), (
        "README settings table is stale: regenerate it with `ambience settings`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    command = readme.split("<!-- test-command -->", 1)[1].split("```")[1].splitlines()[1]
    assert "pytest" in command
    run = (REPO / ".ci" / "run").read_text()
    assert "test-command" in run
    # the page's tests fail in CI without a browser: the script installs Debian's when it is missing
    assert "command -v chromium" in run and "apt-get install -y chromium" in run


def test_architecture_lists_every_kit_module() -> None:
    architecture = (REPO / "docs" / "architecture.md").read_text()
    kit = sorted(p.name for p in (REPO / "services" / "common").glob("*.py") if p.name != "__init__.py")
    missing = [name for name in kit if f"| `{name}` |" not in architecture]
    assert not missing, f"docs/architecture.md's kit table lacks {missing}"


def test_no_docstring_cites_a_document_the_repository_lacks() -> None:
    """Docstrings name documents a reader can open (docs/*.md, README.md), not outside ones."""
    name = "SP" + "EC"  # spelt in two parts so that this test does not find itself
    cited = re.compile(rf"\b{name}(?:\.md)?\b")
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("services", "gateway", "ambience", "bench", "tests", "tools")
        for path in (REPO / folder).rglob("*.py")
        if cited.search(path.read_text())
    ]
    assert not offenders, offenders
