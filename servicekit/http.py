"""HTTP conventions every service shares: bodies as JSON or form, errors as JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import orjson
import structlog
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from servicekit.auth import Forbidden, Identity, Unauthorized
from servicekit.db import DATABASE_ERRORS, DB_RETRY_AFTER_S, database_unavailable
from servicekit.statemachine import IllegalTransition

M = TypeVar("M", bound=BaseModel)
log = structlog.get_logger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class NotFound(Exception):
    def __init__(self, what: str, id: object) -> None:
        super().__init__(f"{what} {id} not found")


def body_of(model: type[M]) -> Callable[[Request], Coroutine[Any, Any, M]]:
    """A dependency that reads ``model`` from a JSON or form-encoded body.

    The seed's clients send both (httpie sends JSON, siege sends a form); anything
    that is not a form is read as JSON. Errors are 422s naming the field.
    """

    async def read(request: Request) -> M:
        data = await request_data(request)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from exc

    return read


async def request_data(request: Request) -> Any:
    """The body as data: a form's fields as a dict, else the JSON (``{}`` when empty).

    Invalid JSON is a 422 (``RequestValidationError``)."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return dict((await request.form()).items())
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": f"invalid JSON: {exc}",
                    "input": None,
                }
            ]
        ) from exc


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"detail": f"unauthorized: {exc}"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": f"forbidden: {exc}"}, status_code=403)

    @app.exception_handler(IllegalTransition)
    async def conflict(_: Request, exc: IllegalTransition) -> JSONResponse:
        body = {"detail": str(exc), "currentState": str(exc.state), "action": str(exc.action)}
        return JSONResponse(body, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(
            {"detail": f"invalid request: {summary}", "errors": errors}, status_code=422
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            return await unexpected(request, exc)
        # Expected while PostgreSQL restarts: one line, no traceback. The transaction did not
        # commit (or, rarely, its commit's answer was lost: a retry with its key tells).
        log.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
        return JSONResponse(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        )

    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, database_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)


# The pieces every service's routes share.


class Schema(BaseModel):
    """Request and response bodies: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ApproveById(Schema):
    """The seed's approve call: ``PUT /models`` (or ``/targets``) with ``{"id": N}``."""

    id: int = Field(gt=0)


class Rejection(Schema):
    reason: str = Field(min_length=1, max_length=2000)


class Cancellation(Schema):
    reason: str | None = Field(None, max_length=2000)


UserFilter = Annotated[str | None, Query(alias="userId")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
PositiveId = Annotated[int, Path(gt=0)]


def unit_of_work(request: Request) -> Any:
    """The request's unit of work: the one already open for it (an idempotent command's,
    ``servicekit.idempotency``), else a fresh one from the factory ``bootstrap.build`` put
    on the app."""
    open_one = getattr(request.state, "uow", None)
    return open_one if open_one is not None else request.app.state.uow_factory()


def ensure_visible(who: Identity, owner: str | None, what: str, id: object) -> None:
    """Someone else's request is answered as if it did not exist (404), not 403: a user
    learns nothing of requests that are not theirs."""
    if not who.may_see(owner):
        raise NotFound(what, id)
