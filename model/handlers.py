"""What the model context does: commands from the API, events from core.

Every handler runs in one unit of work, so the request row and the events it
raises are committed together.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from prometheus_client import Counter

from contracts import core
from model.domain import ModelRequest, State
from model.repository import ModelUnitOfWork
from servicekit.http import NotFound
from servicekit.statemachine import IllegalTransition

log = structlog.get_logger(__name__)

CORE_EVENTS_REFUSED = Counter(
    "model_core_events_refused_total",
    "Events from core the request's state did not allow (e.g. completion of a cancelled request)",
    ["event", "state"],
)

UowFactory = Callable[[], ModelUnitOfWork]


async def request_model(uow: ModelUnitOfWork, user_id: str, model_name: str) -> ModelRequest:
    async with uow:
        req = ModelRequest.request(await uow.requests.next_id(), user_id, model_name)
        await uow.requests.save(req)
        await uow.commit()
    log.info("model request created", model_request_id=req.id, user_id=user_id)
    return req


async def approve(uow: ModelUnitOfWork, id: int) -> ModelRequest:
    return await _change(uow, id, ModelRequest.approve)


async def reject(uow: ModelUnitOfWork, id: int, reason: str) -> ModelRequest:
    return await _change(uow, id, lambda req: req.reject(reason))


async def cancel(uow: ModelUnitOfWork, id: int, reason: str | None = None) -> ModelRequest:
    return await _change(uow, id, lambda req: req.cancel(reason))


async def _change(
    uow: ModelUnitOfWork, id: int, change: Callable[[ModelRequest], None]
) -> ModelRequest:
    """Load the request locked, apply one domain action, store it with its events."""
    async with uow:
        req = await _get(uow, id)
        previous = req.state
        change(req)
        await uow.requests.save(req)
        await uow.commit()
    log.info("model request changed", model_request_id=id, previous=previous, state=req.state)
    return req


async def get(uow: ModelUnitOfWork, id: int) -> ModelRequest:
    async with uow:
        return await _get(uow, id, for_update=False)


async def list_requests(
    uow: ModelUnitOfWork, user_id: str | None, limit: int, offset: int
) -> list[ModelRequest]:
    async with uow:
        return await uow.requests.list(user_id, limit, offset)


async def _get(uow: ModelUnitOfWork, id: int, *, for_update: bool = True) -> ModelRequest:
    req = await uow.requests.get(id, for_update=for_update)
    if req is None:
        raise NotFound("model request", id)
    return req


# Events from core. The consumer runtime owns the unit of work and commits it.


async def on_progress(uow: ModelUnitOfWork, event: core.ModelProgressed) -> None:
    await _apply(uow, event, lambda req: req.record_progress(event.step, event.total_steps))


async def on_completed(uow: ModelUnitOfWork, event: core.ModelCompleted) -> None:
    await _apply(uow, event, ModelRequest.complete)


async def on_failed(uow: ModelUnitOfWork, event: core.ModelFailed) -> None:
    await _apply(uow, event, lambda req: req.fail(event.reason))


async def _apply(
    uow: ModelUnitOfWork, event: core.CoreJobEvent, change: Callable[[ModelRequest], None]
) -> None:
    name = event.event_type()
    req = await uow.requests.get(int(event.request_id))
    if req is None:
        log.warning(
            "core event for unknown request", event_type=name, model_request_id=event.request_id
        )
        CORE_EVENTS_REFUSED.labels(name, "unknown").inc()
        return
    try:
        change(req)
    except IllegalTransition as exc:
        # A cancelled request stays cancelled whatever core says: core's compensation
        # check should have stopped it, this is the last line of defence.
        level = log.warning if req.state == State.CANCELED else log.info
        level("core event refused", event_type=name, model_request_id=req.id, why=str(exc))
        CORE_EVENTS_REFUSED.labels(name, req.state.value).inc()
        return
    await uow.requests.save(req)


CORE_HANDLERS = {
    core.ModelProgressed: on_progress,
    core.ModelCompleted: on_completed,
    core.ModelFailed: on_failed,
}
