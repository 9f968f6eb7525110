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
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from servicekit.auth import Forbidden, Identity, Unauthorized
from servicekit.db import DATABASE_ERRORS, DB_RETRY_AFTER_S, database_unavailable
from servicekit.errors import (
    BEARER_CHALLENGE,
    error_body,
    forbidden_detail,
    invalid_body,
    unauthorized_detail,
)
from servicekit.statemachine import IllegalTransition

M = TypeVar("M", bound=BaseModel)
log = structlog.get_logger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

MAX_ID = 2**63 - 1  # PostgreSQL's bigint: every id a client names is 1 … MAX_ID
MAX_OFFSET = 10_000_000  # past any list a client pages through; keeps OFFSET cheap to refuse
JSON_MAX_DEPTH = 32  # no request body of ours nests deeper than 3

# Control characters PostgreSQL refuses (NUL) or that forge lines in logs and chat. Free
# text (a reason) may hold tabs and line breaks; a name or an id may hold none of them.
_CONTROLS = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))) - {"\t", "\n", "\r"}
_LINE_BREAKS = frozenset("\t\n\r\u2028\u2029")


class InvalidJson(ValueError):
    """A body that is not JSON we take: malformed, or nested deeper than JSON_MAX_DEPTH."""


def loads_json(raw: bytes | str) -> Any:
    """JSON from a request body; raises :class:`InvalidJson` (never RecursionError)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"invalid JSON: {exc}") from exc
    level: list[Any] = [data]
    for _ in range(JSON_MAX_DEPTH + 1):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return data
    raise InvalidJson(f"invalid JSON: nested deeper than {JSON_MAX_DEPTH} levels")


def refuse_controls(value: str) -> str:
    """Text: no NUL or other control character but tab and line breaks."""
    if any(c in _CONTROLS for c in value):
        raise ValueError("must not contain control characters (NUL, escapes, …)")
    return value


def one_line(value: str) -> str:
    """A name or an id: no control character at all, line breaks included."""
    refuse_controls(value)
    if any(c in _LINE_BREAKS for c in value):
        raise ValueError("must be one line (no tabs or line breaks)")
    return value


def optional_line(value: str | None) -> str | None:
    return value if value is None else one_line(value)


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

    read.body_model = model  # type: ignore[attr-defined]  # servicekit.openapi documents it
    return read


async def request_data(request: Request) -> Any:
    """The body as data: a form's fields as a dict, else the JSON (``{}`` when empty).

    Invalid JSON is a 422 (``RequestValidationError``)."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return dict((await request.form()).items())
    if content_type == "application/x-www-form-urlencoded":
        return form_fields(raw)
    if not raw.strip():
        return {}
    try:
        return loads_json(raw)
    except InvalidJson as exc:
        raise _invalid(("body",), "json_invalid", str(exc)) from exc


def form_fields(raw: bytes) -> dict[str, str]:
    """A url-encoded form's fields as a 422-raising dependency wants them."""
    try:
        return dict(form_pairs(raw))
    except InvalidInput as exc:
        raise _invalid(("body", *exc.loc), "form_invalid", exc.message) from exc


class InvalidInput(ValueError):
    """Input no model could take, by where it is (``loc``): 422."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(f"{'.'.join(loc) or 'body'}: {message}")
        self.loc = loc
        self.message = message


def form_pairs(raw: bytes) -> list[tuple[str, str]]:
    """A url-encoded form's (name, value) pairs. A name or value that is not UTF-8 is
    refused naming it (``InvalidInput``), not stored as replacement characters."""
    try:
        text = raw.decode("ascii")  # a url-encoded body is ASCII: anything else is escaped
    except UnicodeDecodeError as exc:
        raise InvalidInput((), "a url-encoded form must be ASCII") from exc
    pairs = parse_qsl(text, keep_blank_values=True, errors="surrogateescape")
    for name, value in pairs:
        for part in (name, value):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError as exc:
                shown = name.encode("utf-8", "replace").decode()
                raise InvalidInput((shown,), "must be UTF-8") from exc
    return pairs


def _invalid(loc: tuple[str, ...], type: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": type, "loc": loc, "msg": msg, "input": None}])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            error_body(unauthorized_detail(exc)), status_code=401, headers=BEARER_CHALLENGE
        )

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse(error_body(forbidden_detail(exc)), status_code=403)

    @app.exception_handler(IllegalTransition)
    async def conflict(_: Request, exc: IllegalTransition) -> JSONResponse:
        body = {"detail": str(exc), "currentState": str(exc.state), "action": str(exc.action)}
        return JSONResponse(body, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            (".".join(str(p) for p in e["loc"] if p != "body") or "body", e["msg"])
            for e in exc.errors()
        ]
        return JSONResponse(invalid_body(errors), status_code=422)

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


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""Any id a client names, in a body (the path's is :data:`PositiveId`)."""
ONE_LINE = {"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"}
"""What :func:`one_line` checks, for the OpenAPI document (so generated input knows it)."""
Name = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra=ONE_LINE),
    AfterValidator(one_line),
]
"""A user id, a model name, a target type: one line of text."""


class Body(Schema):
    """A request body: unknown fields are refused, and no string in it may carry control
    characters (a field that must be one line says so with :data:`Name`). Each is a 422
    naming the field."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_controls(cls, value: Any) -> Any:
        return refuse_controls(value) if isinstance(value, str) else value


class ApproveById(Body):
    """The seed's approve call: ``PUT /models`` (or ``/targets``) with ``{"id": N}``."""

    id: Id


class Rejection(Body):
    reason: str = Field(min_length=1, max_length=2000)


class Cancellation(Body):
    reason: str | None = Field(None, max_length=2000)


UserFilter = Annotated[
    str | None,
    Query(alias="userId", max_length=255, json_schema_extra=ONE_LINE),
    AfterValidator(optional_line),
]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
PositiveId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int, Query(ge=1, le=MAX_ID)]


async def unit_of_work(request: Request) -> Any:
    """The request's unit of work: the one already open for it (an idempotent command's,
    ``servicekit.idempotency``), else a fresh one from the factory ``bootstrap.build`` put
    on the app. Async so FastAPI calls it on the event loop (a sync dependency would hop to
    its thread pool on every request)."""
    open_one = getattr(request.state, "uow", None)
    return open_one if open_one is not None else request.app.state.uow_factory()


def ensure_visible(who: Identity, owner: str | None, what: str, id: object) -> None:
    """Someone else's request is answered as if it did not exist (404), not 403: a user
    learns nothing of requests that are not theirs."""
    if not who.may_see(owner):
        raise NotFound(what, id)
