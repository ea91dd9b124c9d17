"""API key and CORS of the gateway (the ASGI app with a real catalog database)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ambience_support.processes import free_port
from gateway.app import create_app
from gateway.auth import OPEN_PATHS
from gateway.settings import GatewaySettings
from services.common.postgres.database import PostgresSettings

KEY = "s3cret-key"


def settings(tmp_path: Path, **kw: object) -> GatewaySettings:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    return GatewaySettings(
        data_dir=tmp_path / "gateway",
        services=["phash", "color"],
        service_urls={"phash": down, "color": down},
        runner_state_dir=tmp_path / "run",
        **kw,
    )


def test_every_route_but_health_needs_the_key(tmp_path: Path, pg_dsn: str) -> None:
    app = create_app(settings(tmp_path, api_key=KEY), PostgresSettings(dsn=pg_dsn))
    routes = [(r.path, sorted(r.methods)[0]) for r in app.routes if isinstance(r, APIRoute)]
    routes += [("/docs", "GET"), ("/openapi.json", "GET"), ("/redoc", "GET"), ("/nowhere", "GET")]
    assert len(routes) > 30
    with TestClient(app) as client:
        # Without the key /health says only how things stand: no URLs, counts or database address.
        assert client.get("/health").json() == {"status": "down"}
        assert client.get("/health", headers={"X-API-Key": KEY}).json()["services"]["phash"]["url"]
        for path, method in routes:
            if path in OPEN_PATHS:  # /health, and the page's entry and sign-in (tests/web checks them)
                continue
            for headers in (
                {},
                {"X-API-Key": "wrong"},
                {"Authorization": "Bearer wrong"},
                {"Authorization": KEY},
            ):
                reply = client.request(method, path, headers=headers)
                assert reply.status_code == 401, (path, headers, reply.status_code)
                assert "API key" in reply.json()["detail"]
            for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
                reply = client.request(method, path, headers=headers)
                assert reply.status_code != 401, (path, headers)
        assert client.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
        # With the key a proxied route reaches for its service, which is down: 503 naming it.
        reply = client.post(
            "/phash_get_similar_images_by_id", json={"image_id": 1, "k": 1}, headers={"X-API-Key": KEY}
        )
        assert reply.status_code == 503 and "phash" in reply.json()["detail"]


def test_health_reports_down_and_unavailable_services(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "color.unavailable").write_text("model weights missing: see its log")
    with TestClient(create_app(settings(tmp_path), PostgresSettings(dsn=pg_dsn))) as client:
        health = client.get("/health").json()
        assert health["services"]["phash"]["status"] == "down"
        assert health["services"]["color"]["status"] == "unavailable"
        assert "weights" in health["services"]["color"]["detail"]
        assert health["catalog"]["status"] == "up"
        # Normal search names the failed services and returns empty lists, duplicate mode refuses.
        from ambience_support.images import encode, synthetic_image

        image = {"image": ("document", encode(synthetic_image(1)))}
        searched = client.post("/reverse_search", files=image)
        failed = searched.headers["X-Ambience-Failed"]
        assert failed.startswith("color=") and "; phash=" in failed
        assert searched.json()["unified_res"] == [] and "failed" not in searched.json()
        assert client.post("/reverse_search", files=image, data={"find_duplicate": "1"}).status_code == 503
        # An add while everything is down is kept for later; the service the runner marked
        # unavailable is left out (a part there would wait for its weights).
        reply = client.post("/calculate_all_image_features", files=image, data={"image_id": "5"})
        assert reply.status_code == 200
        assert {e["status"] for e in reply.json()} == {"unavailable"}
        assert [e["service"] for e in reply.json()] == ["phash"]
        assert client.post("/catalog_status", json={"image_ids": [5]}).json()["5"]["state"] == "pending"


def test_cors_is_off_by_default_and_follows_the_setting(tmp_path: Path, pg_dsn: str) -> None:
    preflight = {"Origin": "https://gallery.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(settings(tmp_path), PostgresSettings(dsn=pg_dsn))) as client:
        reply = client.get("/health", headers={"Origin": "https://gallery.example"})
        assert "access-control-allow-origin" not in reply.headers
    app = create_app(
        settings(tmp_path, api_key=KEY, cors_origins=["https://gallery.example"]),
        PostgresSettings(dsn=pg_dsn),
    )
    with TestClient(app) as client:
        reply = client.options("/reverse_search", headers=preflight)  # no key: browsers never send one here
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == "https://gallery.example"
        reply = client.options("/reverse_search", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in reply.headers


def test_keyless_health_is_computed_at_most_once_per_interval() -> None:
    import asyncio

    from gateway.routes.health import PublicHealth

    calls = []

    async def details() -> dict[str, object]:
        calls.append(1)
        services = {"phash": {"status": "up"}, "color": {"status": "down" if len(calls) > 1 else "up"}}
        return {"services": services, "catalog": {"status": "up"}}

    async def scenario() -> list[str]:
        public = PublicHealth(details, ttl_s=0.2)
        first = await asyncio.gather(*(public.status() for _ in range(20)))
        await asyncio.sleep(0.25)
        return [*first, await public.status()]

    answers = asyncio.run(scenario())
    assert answers == ["up"] * 20 + ["degraded"] and len(calls) == 2


def test_health_names_the_reason_for_every_part_not_up(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "color.unavailable").write_text("model weights missing: run `ambience models fetch`")
    (tmp_path / "run" / "phash.restarts").write_text('{"restarts": 2, "last_exit_code": -9, "at": 0}')
    with TestClient(create_app(settings(tmp_path), PostgresSettings(dsn=pg_dsn))) as client:
        health = client.get("/health").json()
    assert health["services"]["phash"]["restarts"] == 2  # ambience serve restarted it after crashes
    assert health["status"] == "down"  # no service up: down, with the reasons
    assert any(r.startswith("color unavailable: model weights missing") for r in health["reasons"])
    assert any(r.startswith("phash down") for r in health["reasons"])


class Recorder(BaseHTTPRequestHandler):
    """Another program that happens to listen on a disabled service's port."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        Recorder.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args: object) -> None:
        pass


def test_a_disabled_service_answers_404_naming_the_setting(tmp_path: Path, pg_dsn: str) -> None:
    other = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        s = settings(tmp_path)
        s.service_urls["ocr"] = f"http://127.0.0.1:{other.server_address[1]}"  # where ocr would be
        with TestClient(create_app(s, PostgresSettings(dsn=pg_dsn))) as client:
            reply = client.post("/ocr_search_by_text", json={"text": "cafe"})
    finally:
        other.shutdown()
        other.server_close()
    assert reply.status_code == 404
    assert "AMBIENCE_GATEWAY_SERVICES" in reply.json()["detail"] and "ocr" in reply.json()["detail"]
    assert Recorder.seen == [], "the request reached another program"
