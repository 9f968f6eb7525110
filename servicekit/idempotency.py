"""``Idempotency-Key`` on a service's commands (draft-ietf-httpapi-idempotency-key-header).

A client that sends ``Idempotency-Key: K`` with a command may send it again (a timeout, a
dropped connection, a 503) and the command takes effect once:

- the first request with K claims the key (a row in ``idempotency_keys``) in the
  transaction of its effect, and on success stores its response there before the one
  commit: the effect, its outbox events, the key and the response are stored together or
  not at all;
- a repeat within :data:`TTL` with the same method, path and body gets that response
  again (status and body, marked ``Idempotent-Replayed: true``) and changes nothing;
- K with another method, path or body is a 422 naming the header;
- a repeat that arrives while the first is still running waits for it (its claim blocks
  on the first's uncommitted row) and then replays its answer, or runs itself if the first
  failed; after :data:`WAIT_FOR_FIRST_S` it gets 409 "in progress" and retries later.

Only successes (2xx) are stored. Every other answer changed nothing (4xx refusals and
validation errors, 503 when the database is down, 5xx: the transaction rolled back, the key
with it), so a retry is answered afresh against the current state; storing a refusal would
pin a transient one (a target approved before its model completed: 409) to the key for a day.

Keys are per caller (the token's subject): two users' K are independent. Rows older than
:data:`TTL` no longer count and are pruned (:func:`prune_forever`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import orjson
import structlog
from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import MetaData, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from servicekit.auth import caller
from servicekit.http import request_data
from servicekit.tables import idempotency_table

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_LENGTH = 255
TTL = timedelta(hours=24)
WAIT_FOR_FIRST_S = 5.0
PRUNE_EVERY_S = 600.0
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOCK_NOT_AVAILABLE = "55P03"

KEYS = idempotency_table(MetaData())

Handle = Callable[[Request], Awaitable[Response]]


def _invalid(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (HEADER,), "msg": message}])


def parse_key(values: list[str]) -> str | None:
    """The key from the header's values (None: no header). The draft makes it a Structured
    Field string (``"..."``); a bare token is taken as it is. 422 when unusable."""
    if not values:
        return None
    if len(values) > 1:
        raise _invalid("send the header once")
    key = values[0].strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not key:
        raise _invalid("must not be empty")
    if len(key) > MAX_LENGTH:
        raise _invalid(f"must be at most {MAX_LENGTH} characters")
    if not all(" " <= c <= "~" for c in key):
        raise _invalid("must be printable ASCII characters")
    return key


def fingerprint(method: str, path: str, data: Any) -> str:
    """What makes two requests "the same": method, path (with any query) and the body's data
    (so key order, spacing, or JSON against a form with the same fields do not matter)."""
    body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(b"\0".join((method.encode(), path.encode(), body))).hexdigest()


@dataclass(frozen=True)
class Stored:
    request_hash: str
    status: int | None
    body: bytes | None
    media_type: str | None


class KeyInProgress(Exception):
    """The first request with this key is still running (past :data:`WAIT_FOR_FIRST_S`)."""


async def claim(session: AsyncSession, owner: str, key: str, request_hash: str) -> Stored | None:
    """Claim ``key`` in the session's transaction: None if this request now holds it,
    else what the request that completed with it stored.

    A concurrent holder's uncommitted claim makes this wait (bounded by a lock timeout)
    until it commits (then its row is read) or rolls back (then this claim succeeds).
    """
    values = {"request_hash": request_hash, "created_at": func.now()}
    expired = KEYS.c.created_at < func.now() - TTL
    nulls = {"status": None, "body": None, "media_type": None}
    statement = (
        insert(KEYS)
        .values(owner=owner, key=key, **values)
        .on_conflict_do_update(
            index_elements=[KEYS.c.owner, KEYS.c.key], set_=values | nulls, where=expired
        )
        .returning(KEYS.c.key)
    )
    await session.execute(text(f"SET LOCAL lock_timeout = '{int(WAIT_FOR_FIRST_S * 1000)}ms'"))
    try:
        claimed = (await session.execute(statement)).first()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise KeyInProgress(key) from exc
        raise
    await session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    if claimed is not None:
        return None
    row = (
        await session.execute(
            select(KEYS.c.request_hash, KEYS.c.status, KEYS.c.body, KEYS.c.media_type).where(
                KEYS.c.owner == owner, KEYS.c.key == key
            )
        )
    ).one()
    return Stored(row.request_hash, row.status, row.body, row.media_type)


async def record(session: AsyncSession, owner: str, key: str, response: Response) -> None:
    await session.execute(
        update(KEYS)
        .where(KEYS.c.owner == owner, KEYS.c.key == key)
        .values(
            status=response.status_code,
            body=bytes(response.body),
            media_type=response.headers.get("content-type"),
        )
    )


def replay(stored: Stored, request_hash: str) -> Response:
    if stored.request_hash != request_hash:
        raise _invalid(
            "already used for a different request (method, path or body); "
            "send a new key for a new request"
        )
    if stored.status is None:  # not reachable: a claim commits only with its response
        raise KeyInProgress()
    headers = {REPLAYED: "true"}
    if stored.media_type:
        headers["content-type"] = stored.media_type
    return Response(stored.body or b"", status_code=stored.status, headers=headers)


def in_progress() -> JSONResponse:
    return JSONResponse(
        {"detail": f"a request with this {HEADER} is in progress; retry later"},
        status_code=409,
        headers={"Retry-After": "1"},
    )


async def answer_once(request: Request, handle: Handle) -> Response:
    """Run ``handle`` (the route) for ``request`` once per key; see the module's docstring."""
    key = parse_key(request.headers.getlist(HEADER))
    if key is None:
        return await handle(request)
    owner = (await caller(request)).subject  # 401 first: an unknown caller claims nothing
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    request_hash = fingerprint(request.method, target, await request_data(request))
    uow = request.app.state.uow_factory()
    request.state.uow = uow  # the route's handlers join this transaction (``unit_of_work``)
    try:
        async with uow:
            stored = await claim(uow.session, owner, key, request_hash)
            if stored is not None:
                log.info("idempotent replay", key=key, status=stored.status)
                return replay(stored, request_hash)
            response = await handle(request)
            if 200 <= response.status_code < 300:
                await record(uow.session, owner, key, response)
                await uow.commit()
            return response  # not a success: nothing stored, the key stays free
    except KeyInProgress:
        return in_progress()


async def _documented(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=(
                "Makes retrying this command safe: the same key with the same request within "
                "24 h returns the first success again (marked `Idempotent-Replayed: true`) "
                "without a second effect; the key with another request is a 422. At most "
                f"{MAX_LENGTH} printable ASCII characters, e.g. a UUID; keys are per user."
            ),
        ),
    ] = None,
) -> None:
    """Declares the header in the OpenAPI document; :func:`answer_once` reads it. Async: a
    sync dependency would hop to FastAPI's thread pool on every command."""


class IdempotentRoute(APIRoute):
    """Routes whose POST / PUT / PATCH / DELETE honour ``Idempotency-Key``:
    ``APIRouter(route_class=IdempotentRoute)``; reads are left as they are."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if UNSAFE_METHODS & set(kwargs.get("methods") or ()):
            kwargs["dependencies"] = [*(kwargs.get("dependencies") or ()), Depends(_documented)]
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Handle:
        handle = super().get_route_handler()
        if not UNSAFE_METHODS & self.methods:
            return handle

        async def handle_once(request: Request) -> Response:
            return await answer_once(request, handle)

        return handle_once


async def prune(engine: AsyncEngine) -> int:
    """Delete keys older than :data:`TTL`; returns how many."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(KEYS).where(KEYS.c.created_at < func.now() - TTL))
    return result.rowcount or 0


def prune_forever(engine: AsyncEngine, every_s: float = PRUNE_EVERY_S) -> Callable[[], Any]:
    """A worker for ``ServiceRuntime.run_worker``: prunes expired keys every ``every_s``."""

    async def run() -> None:
        while True:
            try:
                pruned = await prune(engine)
                if pruned:
                    log.info("idempotency keys pruned", count=pruned)
            except Exception as exc:  # the database is down: try again next time
                log.warning("idempotency keys not pruned", error=repr(exc))
            await asyncio.sleep(every_s)

    return run
