"""The gateway's own routes (tokens, users, menus): their exceptions as JSON answers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import forbidden, invalid, json_error, user_database_unavailable
from gateway.state import LOGGER, REQUEST_CONTEXT
from gateway.user_rules import InvalidField
from gateway.users import LastAdmin, UserExists, UserNotFound
from servicekit.auth import Forbidden
from servicekit.db import DATABASE_ERRORS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answers_errors(handler: Handler) -> Handler:
    """Labels the request for metrics and turns the identity domain's exceptions into their
    JSON answers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is not None:  # the metrics label: the path template, e.g. /users/{username}
            request[REQUEST_CONTEXT].route = resource.canonical
        try:
            return await handler(request)
        except InvalidField as exc:
            return invalid(exc.field, exc.message)
        except Forbidden as exc:
            return forbidden(exc)
        except UserNotFound as exc:
            return json_error(404, str(exc))
        except (UserExists, LastAdmin) as exc:
            return json_error(409, str(exc))
        except DATABASE_ERRORS as exc:
            # Database down, or not migrated: say so without SQL, addresses or traces.
            request.app[LOGGER].warning(
                "user_database_error", path=request.path, error=type(exc).__name__
            )
            return user_database_unavailable()

    return wrapped


@answers_errors
async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    """Another method on one of the gateway's own paths: 405, not a trip to the proxy."""
    resource = request.match_info.route.resource
    allowed = sorted({route.method for route in resource or () if route.method != "*"})
    allow = ", ".join(allowed)
    return json_error(405, f"method not allowed; allowed: {allow}", headers={"Allow": allow})
