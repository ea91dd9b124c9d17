"""The web page: static files from this package, plus the few routes only the page needs.

The page (``static/``) is plain HTML, CSS and one script, served as they are: no CDN, no build step,
so it works on a box without internet. Everything it shows comes from the gateway's public routes
(the same a gallery calls); this module adds only what a browser needs on top:

- ``GET /``: the page; ``GET /ui/{file}``: its files;
- ``GET/POST /ui/login``, ``POST /ui/logout``: with ``AMBIENCE_API_KEY`` set, the key is asked once
  and kept in an HttpOnly, SameSite=Strict cookie holding a token derived from the key (never the
  key itself); see :mod:`gateway.web.session`;
- ``POST /ui/allocate_ids``: fresh image ids for uploads from the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.web import session
from services.common.postgres.database import Cursor, Migration, SqlRunner
from services.common.schemas import ID_MAX

STATIC = Path(__file__).parent / "static"
#: The kinds of file the page is made of (views/ holds one module per view).
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
}


def asset_path(name: str) -> Path | None:
    """The page file ``name`` names (``app.js``, ``views/map.js``), or None: only files of the
    page's kinds inside the static folder, whatever the name says (``..``, links out)."""
    path = (STATIC / name).resolve()
    if path.suffix not in MEDIA_TYPES or not path.is_file() or not path.is_relative_to(STATIC.resolve()):
        return None
    return path


COMPONENT = "web"
MIGRATIONS = [
    Migration(
        1,
        "page image ids",
        # Ids handed to the page's uploads: reserved here, so two browsers never get the same one.
        "CREATE SEQUENCE gateway_page_ids MINVALUE 1;",
    )
]


class AllocateIds(BaseModel):
    count: int = Field(ge=1, le=10_000, description="How many fresh image ids to reserve")


def allocate_ids(db: SqlRunner, count: int) -> list[int]:
    """``count`` consecutive ids above every id the catalog knows and every id handed out before."""

    def reserve(cur: Cursor) -> list[int]:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('gateway_page_ids'))")
        cur.execute("SELECT coalesce(max(image_id), 0) FROM gateway_images")
        highest_known = int(cur.fetchone()[0])
        cur.execute("SELECT last_value, is_called FROM gateway_page_ids")
        last, called = cur.fetchone()
        start = max(highest_known + 1, int(last) + 1 if called else int(last))
        if start + count > ID_MAX:
            raise HTTPException(409, "no image ids left below 2^63")
        cur.execute("SELECT setval('gateway_page_ids', %s, true)", (start + count - 1,))
        return list(range(start, start + count))

    return db.run(reserve)


def add_routes(app: FastAPI, api_key: str | None, database: SqlRunner) -> None:
    """The page's routes (left out of the OpenAPI schema: they are for browsers); ``database`` is
    the catalog's (ids are allocated there). On the app itself, like every gateway route, so
    ``app.routes`` lists them."""
    router = APIRouter(include_in_schema=False)

    def asset(name: str) -> FileResponse:
        path = asset_path(name)
        if path is None:
            raise HTTPException(404, f"no page file {name!r}")
        # no-cache: the browser revalidates (cheap, ETag) so a new version shows after an upgrade.
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})

    @router.get("/")
    async def page(request: Request) -> Response:
        if api_key and not session.authorised(request, api_key):
            return RedirectResponse("/ui/login", status_code=303)
        return asset("index.html")

    @router.get("/ui/login")
    async def login_page() -> Response:
        if not api_key:
            return RedirectResponse("/", status_code=303)
        return asset("login.html")

    @router.post("/ui/login")
    async def login(key: Annotated[str, Form(max_length=4096)]) -> Response:
        if not api_key:
            return RedirectResponse("/", status_code=303)
        if not session.key_matches(key, api_key):
            return RedirectResponse("/ui/login?failed=1", status_code=303)
        reply = RedirectResponse("/", status_code=303)
        session.set_cookie(reply, api_key)
        return reply

    @router.post("/ui/logout")
    async def logout() -> Response:
        reply = RedirectResponse("/ui/login" if api_key else "/", status_code=303)
        reply.delete_cookie(session.COOKIE, path="/")
        return reply

    @router.get("/ui/{name:path}")
    async def static_file(name: str) -> Response:
        return asset(name)

    @router.post("/ui/allocate_ids")
    async def allocate(body: AllocateIds) -> dict[str, Any]:
        ids = await run_in_threadpool(allocate_ids, database, body.count)
        return {"ids": ids}

    for route in router.routes:
        app.router.routes.append(route)
