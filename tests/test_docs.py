"""The docs stay true to the code."""

from __future__ import annotations

import re

from ambience.settings import settings_markdown
from tests.helpers import REPO


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
    assert "test-command" in (REPO / ".ci" / "run").read_text()
