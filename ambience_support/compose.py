"""deploy/'s Compose files as the deploy tests read them: loaded, interpolated as Compose does,
validated against the Compose Specification (tests/deploy/test_compose.py, test_compose_scale.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ambience_support.photos import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yml"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` with the given environment (default: none set)."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3) or ""
        return env.get(name) or default

    return re.sub(r"\$\{([A-Z0-9_]+)(:-([^}]*))?\}", sub, value)


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the Compose Specification schema it vendors (compose-spec/compose-spec,
    Apache-2.0; see its builtin_schemas/vendor/licenses)."""
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, timeout=120)
