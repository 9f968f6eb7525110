"""What the gateway does to protect itself and the services behind it, wired in one place.

Each concern has its module: rate limits (gateway.rate_limit), body size
(gateway.body_limit), CORS (gateway.cors), the headers of every answer
(gateway.headers.finish_response), a circuit breaker per upstream (gateway.breakers) and
the proxy's retry policy (gateway.retry_policy).
Every refusal is a JSON ``{"detail": ...}`` naming the limit, never internals.
"""

from __future__ import annotations

from aiohttp import web

from gateway.breakers import UPSTREAM_BREAKERS, upstream_breakers
from gateway.cors import CORS_POLICY, CorsPolicy
from gateway.headers import finish_response
from gateway.rate_limit import install_rate_limits
from gateway.retry_policy import install_retry_policy
from gateway.state import ROUTE_TABLE, SETTINGS


def install_protection(app: web.Application) -> None:
    """Puts the limiters, the CORS policy and the breakers on ``app`` from its settings.

    Call after the settings and the route table are on the app. The middlewares are in
    :data:`gateway.middlewares.MIDDLEWARES`; each does nothing when its feature is off.
    """
    settings = app[SETTINGS]
    install_rate_limits(app)
    if settings.cors_origins:
        app[CORS_POLICY] = CorsPolicy(settings.cors_origins, settings.cors_max_age_s)
    app.on_response_prepare.append(finish_response)
    app[UPSTREAM_BREAKERS] = upstream_breakers(
        (route.upstream for route in app[ROUTE_TABLE]), settings
    )
    install_retry_policy(app)
