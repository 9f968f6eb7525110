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


@dataclass(slots=True)
class RequestContext:
    """Per-request facts shared between the middlewares and the handlers.

    A mutable object rather than separate request keys because ``Request.clone()`` (used by
    the identity middleware) copies the request's state dict: the outer middleware must still
    see what the handler records.
    """

    request_id: str
    route: str = UNMATCHED_ROUTE


SETTINGS = web.AppKey("gateway.settings", GatewaySettings)
ROUTE_TABLE = web.AppKey("gateway.route_table", RouteTable)
UPSTREAM_SESSION = web.AppKey("gateway.upstream_session", aiohttp.ClientSession)
TRACING = web.AppKey("gateway.tracing", Tracing)
LOGGER = web.AppKey("gateway.logger", FilteringBoundLogger)
REQUEST_CONTEXT = web.RequestKey("gateway.request_context", RequestContext)

# The caller's verified identity, set by gateway.authentication for what runs after it.
IDENTITY = web.RequestKey("identity", Identity)
