"""The FastAPI application every service runs: health, metrics, request context, errors."""

from __future__ import annotations

import importlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit import metrics
from servicekit.auth import caller
from servicekit.edge import EdgeMiddleware
from servicekit.http import install_error_handlers
from servicekit.logging import configure_logging, register_secrets
from servicekit.openapi import document
from servicekit.relay_state import outbox_counts
from servicekit.runtime import ServiceRuntime

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

READINESS_REQUIRES = ("database",)
"""The checks a pod is taken out of service for. Not the broker: a request is served once its
change and events are in the database (the outbox); the relay publishes when the broker is
back. Failing readiness on a Kafka outage would drop every pod at once and refuse the writes
the outbox exists to keep."""


def create_app(runtime: ServiceRuntime, *routers: APIRouter) -> FastAPI:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # FastAPI's own telemetry off: it asked the global providers on every request whether
    # it was wanted, and each service has its own provider (``servicekit.tracing``).
    off = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title=f"nocode {settings.service_name}", lifespan=lifespan, telemetry=off)
    app.state.runtime = runtime
    app.state.token_verifier = settings.token_verifier()
    install_error_handlers(app)
    document(app)  # bodies, the bearer scheme and the errors in /openapi.json
    app.include_router(health_router(runtime))
    for router in routers:
        # Every route but health and metrics needs a valid token.
        app.include_router(router, dependencies=[Depends(caller)])

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
    runtime.tracing.instrument_fastapi(app)  # a server span per request, outermost
    return app


def health_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])
    settings = runtime.settings

    @router.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        """503 only when a check readiness depends on fails (the database); every other
        check (the broker) is reported, and a failing one makes the status ``degraded``."""
        checks = await runtime.ready()
        ok = all(checks.get(name) == "ok" for name in READINESS_REQUIRES)
        status = "unavailable" if not ok else "ok" if set(checks.values()) == {"ok"} else "degraded"
        return JSONResponse({"status": status, **checks}, status_code=200 if ok else 503)

    @router.get("/outbox")
    async def outbox() -> JSONResponse:
        """How many events this service's outbox holds per topic (counts only, no data):
        what ``nocode replay`` compares its reading of the topics with."""
        if not runtime.publishes:
            detail = f"{settings.service_name} publishes no events"
            return JSONResponse({"detail": detail}, status_code=404)
        try:
            topics = await outbox_counts(runtime.engine)
        except Exception as exc:
            detail = f"database unreachable: {type(exc).__name__}"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"service": settings.service_name, "topics": topics})

    return router


class RequestContextMiddleware:
    """Binds the request id for logs (and echoes it); records RED metrics per route."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if not route.startswith(("/metrics", "/health")):
                method = scope["method"]
                metrics.HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
                metrics.HTTP_LATENCY.labels(self.service, method, route).observe(
                    time.perf_counter() - started
                )


SERVICE_PACKAGE_ENV = "NOCODE_SERVICE_PACKAGE"
"""Where :func:`worker_app` finds the service to build (set by :func:`serve` for its workers)."""


def serve(app: FastAPI, runtime: ServiceRuntime) -> None:
    """Run one service in the foreground (what ``nocode serve NAME`` and images do): in this
    process, or in ``WORKERS`` worker processes sharing its port."""
    s = runtime.settings
    configure_logging(s.service_name, s.log_level, log_file=s.log_file)
    register_secrets(s)
    options: dict[str, Any] = {
        "host": s.host,
        "port": s.port,
        "access_log": False,
        "log_config": None,
        "lifespan": "on",
        "server_header": False,  # no "server: uvicorn" to tell an attacker what runs here
    }
    if s.workers > 1:
        # uvicorn's workers import the app afresh, by name: each builds its own service.
        os.environ[SERVICE_PACKAGE_ENV] = type(s).__module__.split(".")[0]
        target = f"{__name__}:{worker_app.__name__}"
        uvicorn.run(target, factory=True, workers=s.workers, **options)
        return
    uvicorn.run(app, workers=1, **options)  # 1: not uvicorn's WEB_CONCURRENCY


def worker_app() -> FastAPI:
    """One worker process's app: its service's ``bootstrap.build()`` (see :func:`serve`)."""
    bootstrap = importlib.import_module(f"{os.environ[SERVICE_PACKAGE_ENV]}.bootstrap")
    app, runtime = bootstrap.build()
    s = runtime.settings
    configure_logging(s.service_name, s.log_level, log_file=s.log_file)
    register_secrets(s)
    return app
