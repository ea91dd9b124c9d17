"""A model service for download tests: its weights files are listed in a JSON manifest
(``AMBIENCE_TEST_WEIGHTS_MANIFEST``) that points at a local test server.

It is registered like any real service (a descriptor in services.registry.SERVICES with a
``weights`` function), so ``ambience models fetch`` / ``list`` are exercised through the same
registry path real services use.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from services.common.descriptor import ServiceDescriptor
from services.common.models.weights import WeightsFile
from services.registry import SERVICES

NAME = "fixture_model"
INFO = ServiceDescriptor(
    name=NAME,
    port=1,
    extra="test",
    module="ambience_support.fixture_service",
    weights=f"{__name__}:weights_files",
)


def weights_files(_settings: object = None) -> list[WeightsFile]:
    manifest = json.loads(Path(os.environ["AMBIENCE_TEST_WEIGHTS_MANIFEST"]).read_text())
    return [
        WeightsFile(
            service=NAME,
            description=entry["description"],
            target=Path(entry["target"]),
            url=entry["url"],
            sha256=entry.get("sha256", ""),
        )
        for entry in manifest
    ]


if __name__ == "__main__":  # python -m ambience_support.fixture_service models fetch ... (a killable CLI)
    from ambience.cli import main

    SERVICES[NAME] = INFO
    sys.exit(main(sys.argv[1:]))
