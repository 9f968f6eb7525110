"""``GET /docs``: Swagger UI on the gateway's ``/openapi.json``, with no CDN.

Swagger UI's script and stylesheet come from the ``fastapi-offline`` package (a PyPI
wheel carrying swagger-ui-dist 5, which reads OpenAPI 3.1), installed with the gateway;
they are read once when the app is built and served from ``/docs/assets/``. The page
itself is FastAPI's Swagger UI page pointed at those copies, with the online validator
badge off, so opening it sends no request anywhere but here.
"""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web
from fastapi.openapi.docs import get_swagger_ui_html

from gateway.authentication import PUBLIC_HANDLERS

ASSETS_PATH = "/docs/assets"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
ASSET_CACHE = "public, max-age=86400"
# The page's inline script starts Swagger UI; everything else comes from here.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)

DOCS_PAGE = web.AppKey("gateway.docs_page", bytes)
DOCS_ASSETS = web.AppKey("gateway.docs_assets", dict[str, bytes])


def swagger_page() -> bytes:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="nocode API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
    )
    return bytes(page.body)


def swagger_assets() -> dict[str, bytes]:
    static = files("fastapi_offline") / "static"
    return {name: (static / name).read_bytes() for name in ASSET_TYPES}


async def docs_handler(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[DOCS_PAGE],
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"},
    )


async def docs_asset_handler(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = request.app[DOCS_ASSETS].get(name)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=body, content_type=ASSET_TYPES[name], headers={"Cache-Control": ASSET_CACHE}
    )


def add_docs(app: web.Application) -> None:
    """Register ``/docs`` and its assets (public); call before the catch-all."""
    app[DOCS_PAGE] = swagger_page()
    app[DOCS_ASSETS] = swagger_assets()
    app[PUBLIC_HANDLERS] = app[PUBLIC_HANDLERS] | {docs_handler, docs_asset_handler}
    app.router.add_get("/docs", docs_handler)
    app.router.add_get(ASSETS_PATH + "/{name}", docs_asset_handler)
