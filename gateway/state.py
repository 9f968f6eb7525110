"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from gateway.routes import RouteTable
from gateway.settings import GatewaySettings
from servicekit.auth import Identity
from servicekit.tracing import Tracing

UNMATCHED_ROUTE = "unmatched"
"""Metrics label for requests no route serves; raw paths would explode label cardinality."""

PROXY_ROUTE_NAME = "proxy"
"""The name of the proxy's catch-all route: it labels what it serves itself."""


@dataclass(slots=True)
class RequestContext:
    """Per-request facts shared between the middlewares and the handlers.

    A mutable object rather than separate request keys because ``Request.clone()`` (used by
    the identity middleware) copies the request's state dict: the outer middleware must still
    see what the handler records.
    """

    request_id: str
    route: str = UNMATCHED_ROUTE


def route_label(request: web.Request, context: RequestContext) -> str:
    """The metrics and span label of a request: what its handler set (the proxy's upstream
    prefix, an identity route's template), else the template of the gateway's own route
    that matched it (``/openapi.json``, ``/docs``), else ``unmatched``."""
    if context.route != UNMATCHED_ROUTE:
        return context.route
    resource = request.match_info.route.resource
    if resource is None or resource.name == PROXY_ROUTE_NAME:
        return UNMATCHED_ROUTE
    return resource.canonical


SETTINGS = web.AppKey("gateway.settings", GatewaySettings)
ROUTE_TABLE = web.AppKey("gateway.route_table", RouteTable)
UPSTREAM_SESSION = web.AppKey("gateway.upstream_session", aiohttp.ClientSession)
TRACING = web.AppKey("gateway.tracing", Tracing)
LOGGER = web.AppKey("gateway.logger", FilteringBoundLogger)
REQUEST_CONTEXT = web.RequestKey("gateway.request_context", RequestContext)

# The caller's verified identity, set by gateway.authentication for what runs after it.
IDENTITY = web.RequestKey("identity", Identity)
