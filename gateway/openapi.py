"""``GET /openapi.json``: one OpenAPI document for everything a client calls here.

The gateway's own paths (gateway.api_spec) plus, for each route, the paths of the
service behind it that the route forwards (``/models`` and ``/models/...`` from model's
document, as a client calls them through the gateway; the services' health and metrics
are not routed, so not listed). No service's code is imported: each service's
``/openapi.json`` is fetched over HTTP, when the document is first asked for, and the
merged document is kept for ``GATEWAY_OPENAPI_CACHE_S``. A service that cannot be reached
is left out (named in ``x-unavailable``) and asked again a few seconds later.

Schemas keep their names where every service means the same thing by them (``Error``);
a name two services use differently is prefixed with the route's name (``targets.Stuck``).
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.api_spec import EXTRA_ERRORS, error_answers, own_paths
from gateway.authentication import PUBLIC_HANDLERS
from gateway.routes import Route
from gateway.state import LOGGER, ROUTE_TABLE, SETTINGS, UPSTREAM_SESSION
from servicekit.openapi import BEARER

REF_PREFIX = "#/components/schemas/"
FETCH_TIMEOUT_S = 5.0
PARTIAL_TTL_S = 5.0
BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
TITLE = "nocode platform API (through the gateway)"
DESCRIPTION = (
    "Every path a client calls at the gateway. Get a token with `POST /auth/token` (form "
    "fields `username`, `password`), then send `Authorization: Bearer <access_token>`."
)


class AggregatedSpec:
    """The merged document, built on demand and kept for ``ttl_s`` seconds; one missing a
    service only for ``PARTIAL_TTL_S`` (at most), so the service is soon asked again while
    a stream of requests for the document cannot make a stream of fetches."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._body: bytes | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def body(self, app: web.Application) -> bytes:
        async with self._lock:  # one build at a time; the others wait for it
            if self._body is None or time.monotonic() >= self._expires:
                spec = await build(app)
                self._body = orjson.dumps(spec)
                ttl = min(self.ttl_s, PARTIAL_TTL_S) if "x-unavailable" in spec else self.ttl_s
                self._expires = time.monotonic() + ttl
            return self._body


OPENAPI = web.AppKey("gateway.openapi", AggregatedSpec)


async def openapi_handler(request: web.Request) -> web.Response:
    body = await request.app[OPENAPI].body(request.app)
    return web.Response(body=body, content_type="application/json")


async def build(app: web.Application) -> dict[str, Any]:
    paths, schemas = own_paths()
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": "1", "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
    routes = list(app[ROUTE_TABLE])
    upstream_specs = await asyncio.gather(*(fetch(app, route) for route in routes))
    unavailable = []
    for route, upstream in zip(routes, upstream_specs, strict=True):
        if upstream is None:
            unavailable.append(route.prefix)
        elif upstream:
            merge(spec, route, upstream)
    if unavailable:
        spec["x-unavailable"] = unavailable
    return spec


async def fetch(app: web.Application, route: Route) -> dict[str, Any] | None:
    """The upstream's document; ``{}`` when it publishes none (the console); ``None`` when
    it could not be had."""
    session = app[UPSTREAM_SESSION]
    try:
        async with session.get(
            route.upstream + "/openapi.json",
            timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S),
        ) as answer:
            if answer.status == 404:
                return {}
            answer.raise_for_status()
            document = orjson.loads(await answer.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        app[LOGGER].warning(
            "openapi_fetch_failed", route=route.prefix, error=f"{type(exc).__name__}: {exc}"
        )
        return None
    return document if isinstance(document, dict) else None


def routed(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def merge(spec: dict[str, Any], route: Route, upstream: dict[str, Any]) -> None:
    """Add the paths of ``upstream`` that ``route`` forwards, and the schemas they use."""
    prefix = route.prefix
    paths = {
        path: copy.deepcopy(item)
        for path, item in upstream.get("paths", {}).items()
        if routed(path, prefix) and path not in spec["paths"]
    }
    if not paths:
        return
    theirs = upstream.get("components", {}).get("schemas", {})
    ours = spec["components"]["schemas"]
    label = prefix.strip("/").replace("/", ".") or "root"
    renamed = {
        name: name if ours.get(name, schema) == schema else f"{label}.{name}"
        for name, schema in theirs.items()
    }
    for name, schema in theirs.items():
        ours[renamed[name]] = _rename_refs(copy.deepcopy(schema), renamed)
    operation_ids = _operation_ids(spec["paths"])
    for path, item in paths.items():
        item = _rename_refs(item, renamed)
        for method, operation in item.items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            operation.setdefault("tags", [label])
            if operation.get("operationId") in operation_ids:
                operation["operationId"] = f"{label}.{operation['operationId']}"
            if operation.get("security"):
                # What the gateway itself may answer on the way: no or a refused token
                # (with the hint), a full bucket, an upstream that failed or timed out.
                responses = operation.setdefault("responses", {})
                responses.update(error_answers("401"))
                for status in EXTRA_ERRORS:
                    responses.setdefault(status, error_answers(status)[status])
        spec["paths"][path] = item


def _operation_ids(paths: dict[str, Any]) -> set[str]:
    return {
        operation["operationId"]
        for item in paths.values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def _rename_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            name = ref[len(REF_PREFIX) :]
            node["$ref"] = REF_PREFIX + renamed.get(name, name)
        for key, value in node.items():
            if key != "$ref":
                node[key] = _rename_refs(value, renamed)
    elif isinstance(node, list):
        return [_rename_refs(value, renamed) for value in node]
    return node


def add_openapi(app: web.Application) -> None:
    """Register ``/openapi.json`` (public); call after ``add_identity``, before the catch-all."""
    app[OPENAPI] = AggregatedSpec(app[SETTINGS].openapi_cache_s)
    app[PUBLIC_HANDLERS] = app[PUBLIC_HANDLERS] | {openapi_handler}
    app.router.add_get("/openapi.json", openapi_handler)
