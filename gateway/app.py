"""Composition root: builds the gateway application and serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
import uvloop
from aiohttp import web

from gateway.asyncapi import add_asyncapi
from gateway.auth_routes import add_identity
from gateway.console import add_console
from gateway.docs import add_docs
from gateway.error_pages import install_error_pages
from gateway.health import live_handler, ready_handler
from gateway.metrics import metrics_handler
from gateway.middlewares import MIDDLEWARES
from gateway.openapi import add_openapi
from gateway.protection import install_protection
from gateway.proxy import proxy_handler
from gateway.routes import RouteTable
from gateway.settings import GatewaySettings
from gateway.state import (
    LOGGER,
    PROXY_ROUTE_NAME,
    ROUTE_TABLE,
    SETTINGS,
    TRACING,
    UPSTREAM_SESSION,
)
from servicekit.logging import configure_logging, register_secrets

UPSTREAM_KEEPALIVE_S = 4.0

SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}
"""Options for whatever serves the app (``run_app``, ``AppRunner``, ``TestServer``).

Without ``auto_decompress=False`` aiohttp inflates compressed request bodies, and the
gateway would send them on still labelled with their Content-Encoding.
"""


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """The one client session shared by every proxied request, open for the app's life."""
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_connections,
        limit_per_host=0,
        # Below the services' own keep-alive (uvicorn's 5 s), so an idle pooled connection
        # is dropped here before the service closes it under a request (a POST would fail).
        keepalive_timeout=UPSTREAM_KEEPALIVE_S,
    )
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=settings.upstream_timeout_s, sock_connect=settings.upstream_connect_timeout_s
        ),
        # Bodies pass through as the upstream encoded them.
        auto_decompress=False,
        # A shared jar would hand one user's cookies to the next user's requests.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Send only the headers the client sent, not aiohttp's defaults.
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        # A client span per upstream call; it sends the trace context on (W3C and B3).
        trace_configs=[app[TRACING].aiohttp_trace_config()],
    ) as session:
        # aiohttp would resend PUT and DELETE on its own after a dropped connection; the
        # gateway's retry policy (gateway.proxy) decides instead.
        session._retry_connection = False
        app[UPSTREAM_SESSION] = session
        yield
    await app[TRACING].flush()


def build_app(settings: GatewaySettings) -> web.Application:
    install_error_pages()  # aiohttp's answers to malformed requests: JSON, no version
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[TRACING] = settings.tracing()
    app[ROUTE_TABLE] = RouteTable(settings.routes)
    install_protection(app)  # rate limiter, CORS, a circuit breaker per upstream
    app[LOGGER] = structlog.get_logger("gateway", service=settings.service_name)
    app.cleanup_ctx.append(upstream_session)

    app.router.add_get("/health/live", live_handler)
    app.router.add_get("/health/ready", ready_handler)
    app.router.add_get("/metrics", metrics_handler)
    add_identity(app)  # tokens, users, menus; the user database; before the catch-all below
    add_asyncapi(app)  # the events' AsyncAPI document, public
    add_openapi(app)  # one OpenAPI document: the gateway's paths and the services', public
    add_docs(app)  # Swagger UI on it, from a package's assets, public
    add_console(app)  # the web console's pages: public here, streamed
    app.router.add_route("*", "/{path:.*}", proxy_handler, name=PROXY_ROUTE_NAME)
    return app


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level, log_file=settings.log_file)
    register_secrets(settings)
    app = build_app(settings)
    app[LOGGER].info(
        "starting",
        host=settings.host,
        port=settings.port,
        routes={route.prefix: route.upstream for route in app[ROUTE_TABLE]},
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,  # the request_context middleware logs each request
        print=None,  # stdout carries JSON logs only
        loop=uvloop.new_event_loop(),  # as uvicorn runs the services
        **SERVER_OPTIONS,
    )
