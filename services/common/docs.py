"""Swagger (/docs) and ReDoc (/redoc) served from the installed package, not from a CDN.

FastAPI's own pages load their scripts and styles from jsDelivr (and ReDoc its fonts from Google),
so on a self-hosted box without internet they stay blank. The assets come from the PyPI package
``fastapi-offline`` (its ``static`` folder: swagger-ui-bundle.js, swagger-ui.css,
redoc.standalone.js); only the files are used, the app stays a plain FastAPI.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

#: Where the assets are mounted (under the docs path, so an API key middleware treats them alike).
ASSETS_PATH = "/docs-assets"


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def serve_docs_offline(app: FastAPI) -> None:
    """Replace the CDN-based /docs and /redoc of ``app`` with pages whose assets it serves itself."""
    docs_url, redoc_url, oauth2_url = app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url
    if not docs_url and not redoc_url:
        return
    dropped = {docs_url, redoc_url, oauth2_url} - {None}
    app.router.routes[:] = [r for r in app.router.routes if not (isinstance(r, Route) and r.path in dropped)]
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = app.title

    if docs_url:

        async def swagger_ui(_: Request) -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{title} - Swagger UI",
                oauth2_redirect_url=oauth2_url,
                swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            )

        app.add_route(docs_url, swagger_ui, include_in_schema=False)
        if oauth2_url:

            async def oauth2_redirect(_: Request) -> HTMLResponse:
                return get_swagger_ui_oauth2_redirect_html()

            app.add_route(oauth2_url, oauth2_redirect, include_in_schema=False)
    if redoc_url:

        async def redoc(_: Request) -> HTMLResponse:
            return get_redoc_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{title} - ReDoc",
                redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            )

        app.add_route(redoc_url, redoc, include_in_schema=False)
