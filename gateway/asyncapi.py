"""``GET /asyncapi.json``: the AsyncAPI 3.0 document of every topic and event.

Generated once from ``contracts`` when the app is built; public like the health
endpoints (it describes the contracts, no data).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from contracts.asyncapi import document
from gateway.authentication import PUBLIC_HANDLERS

ASYNCAPI_BODY = web.AppKey("gateway.asyncapi_body", bytes)


async def asyncapi_handler(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ASYNCAPI_BODY], content_type="application/json")


def add_asyncapi(app: web.Application) -> None:
    """Register the route (public); call after ``add_identity``, before the catch-all."""
    app[ASYNCAPI_BODY] = orjson.dumps(document())
    app[PUBLIC_HANDLERS] = app[PUBLIC_HANDLERS] | {asyncapi_handler}
    app.router.add_get("/asyncapi.json", asyncapi_handler)
