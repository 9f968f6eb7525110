"""Composition root: settings in, the console's application out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from console.gateway_client import GatewayClient, GatewayDown, SessionExpired
from console.routes import admin, auth, forms, operations, requests
from console.sessions import COOKIE, Session, SessionStore
from console.settings import ConsoleSettings
from console.web import (
    HERE,
    PREFIX,
    BadCsrf,
    NotFoundPage,
    SignInFirst,
    current_session,
    render,
    sessions,
    signin_redirect,
)
from servicekit.app import RequestContextMiddleware
from servicekit.edge import EdgeMiddleware
from servicekit.logging import configure_logging, register_secrets

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def build(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = GatewayClient(settings.gateway_url, settings.gateway_timeout_s)
        try:
            yield
        finally:
            await app.state.gateway.aclose()

    app = FastAPI(title="nocode console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.openapi_url = None
    app.state.settings = settings
    app.state.sessions = SessionStore(settings.session_idle_s)
    for module in (auth, requests, forms, admin, operations):
        app.include_router(module.router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="static")
    install_handlers(app)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> dict[str, str]:
        # No database, no broker: ready once serving. The gateway being down shows on the
        # pages, and must not take the console out of its load balancer.
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Cache-Control"] = "no-store"
        return response

    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)  # 413 past it
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
    return app


def install_handlers(app: FastAPI) -> None:
    async def maybe_session(request: Request) -> Session | None:
        try:
            return await current_session(request)
        except SignInFirst:
            return None

    @app.exception_handler(SignInFirst)
    async def sign_in_first(request: Request, exc: SignInFirst) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return signin_redirect(exc.expired, exc.next_path)

    @app.exception_handler(SessionExpired)
    async def expired(request: Request, exc: SessionExpired) -> Response:
        sessions(request).end(request.cookies.get(COOKIE))
        if _wants_json(request):
            return JSONResponse({"detail": "session expired"}, status_code=401)
        return signin_redirect(True, request.url.path)

    @app.exception_handler(BadCsrf)
    async def bad_csrf(request: Request, exc: BadCsrf) -> Response:
        session = await maybe_session(request)
        return render(request, "error.html", session, status=403, message="csrf")

    @app.exception_handler(NotFoundPage)
    async def not_found(request: Request, exc: NotFoundPage) -> Response:
        session = await maybe_session(request)
        return render(request, "error.html", session, status=404, message="not_found_text")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        session = await maybe_session(request)
        message = "not_found_text" if exc.status_code in (404, 405) else str(exc.detail)
        return render(request, "error.html", session, status=exc.status_code, message=message)

    @app.exception_handler(GatewayDown)
    async def gateway_down(request: Request, exc: GatewayDown) -> Response:
        session = await maybe_session(request)
        return render(request, "error.html", session, status=503, message="unavailable")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/event-stream" in accept or "application/json" in accept


def serve(app: FastAPI) -> None:
    """Run the console in the foreground (what ``nocode serve console`` and its image do)."""
    s: ConsoleSettings = app.state.settings
    configure_logging(s.service_name, s.log_level)
    register_secrets(s)
    uvicorn.run(
        app,
        host=s.host,
        port=s.port,
        workers=1,  # not uvicorn's WEB_CONCURRENCY, which an app object can't honour
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,  # open event streams would hold a stop forever
        server_header=False,
    )
