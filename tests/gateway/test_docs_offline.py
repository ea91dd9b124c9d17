"""Swagger and ReDoc work without internet: every asset comes from the app itself; the gateway's
pass-through routes carry their services' own request schemas (so "Try it out" can upload)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ambience_support.inprocess import InProcessService, inprocess_services
from ambience_support.pg import TestServer
from ambience_support.processes import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.common.postgres.database import PostgresSettings


@pytest.fixture(scope="module")
def phash(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[InProcessService]:
    """phash served over HTTP (in-process, ambience_support.inprocess)."""
    tmp, dsn = tmp_path_factory.mktemp("docs"), pg_server.new_database("docs")
    with inprocess_services(tmp, dsn, ["phash"]) as running:
        yield running["phash"]


def asset_urls(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", page) + re.findall(r"url: *'([^']+)'", page)


def test_docs_and_redoc_load_every_asset_from_the_app(
    phash: InProcessService, tmp_path: Path, pg_dsn: str
) -> None:
    import httpx

    for base in (phash.url,):
        for page in ("/docs", "/redoc"):
            html = httpx.get(base + page, timeout=30).text
            urls = asset_urls(html)
            assert urls, html
            assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
            for url in urls:
                if url.endswith((".js", ".css", ".png")):
                    assert httpx.get(base + url, timeout=30).status_code == 200, url
    settings = GatewaySettings(
        data_dir=tmp_path / "gateway",
        services=["phash", "color"],
        service_urls={"phash": phash.url, "color": f"http://127.0.0.1:{free_port()}"},
        runner_state_dir=tmp_path / "run",
    )
    with TestClient(create_app(settings, PostgresSettings(dsn=pg_dsn))) as client:
        html = client.get("/docs").text
        assert "cdn.jsdelivr" not in html and "/docs-assets/swagger-ui-bundle.js" in html
        assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert "fonts.googleapis" not in client.get("/redoc").text

        # The pass-through route documents phash's own multipart body; color is down: bare entry.
        document = client.get("/openapi.json").json()
        add = document["paths"]["/calculate_phash_features"]["post"]
        body = add["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert {"image", "image_id"} <= set(document["components"]["schemas"][body]["properties"])
        assert add["tags"] == ["phash"]
        assert "requestBody" not in document["paths"]["/calculate_color_features"]["post"]
