"""The page's files as the gateway serves them: every module of the page, nothing else."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.web import STATIC
from services.common.postgres.database import PostgresSettings


def test_every_page_module_is_served_and_nothing_outside_the_page(tmp_path: Path, pg_dsn: str) -> None:
    app = create_app(
        GatewaySettings(services=[], data_dir=tmp_path / "gateway"), PostgresSettings(dsn=pg_dsn)
    )
    with TestClient(app) as client:
        modules = ["app.js", "core.js", *(f"views/{p.name}" for p in (STATIC / "views").glob("*.js"))]
        assert len(modules) >= 9
        for name in modules:
            reply = client.get(f"/ui/{name}")
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/javascript")
            # every module the page imports is one the gateway serves
            for line in reply.text.splitlines():
                if line.startswith("import ") and " from " in line:
                    target = line.rsplit(" from ", 1)[1].strip('";')
                    base = Path(name).parent
                    assert (STATIC / base / target).resolve().is_file(), (name, target)
        assert client.get("/").text.count('type="module"') == 1
        for outside in (
            "../__init__.py",
            "..%2F__init__.py",
            "views/../../session.py",
            "/etc/passwd",
            "nope.js",
        ):
            assert client.get(f"/ui/{outside}").status_code == 404, outside
