"""``GET /asyncapi.json``: the AsyncAPI 3.0 document of every topic and event.

Generated once from ``contracts`` when the app is built; public like the health
endpoints (it describes the contracts, no data).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from contracts.asyncapi import document

ASYNCAPI_BODY = web.AppKey("gateway.asyncapi_body", bytes)


async def asyncapi_handler(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ASYNCAPI_BODY], content_type="application/json")


def add_asyncapi(app: web.Application) -> None:
    """Register the route; call before the catch-all proxy route."""
    app[ASYNCAPI_BODY] = orjson.dumps(document())
    app.router.add_get("/asyncapi.json", asyncapi_handler)
