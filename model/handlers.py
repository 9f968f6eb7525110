"""What the model context does: commands from the API, events from core.

Every handler runs in one unit of work, so the request row and the events it
raises are committed together; metrics count a change once it committed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

import structlog
from prometheus_client import Counter

from contracts import core
from model.domain import ModelRequest, State
from servicekit import metrics
from servicekit.domain import AbstractUnitOfWork
from servicekit.http import NotFound
from servicekit.statemachine import IllegalTransition

log = structlog.get_logger(__name__)

CORE_EVENTS_REFUSED = Counter(
    "model_core_events_refused_total",
    "Events from core the request's state did not allow (e.g. completion of a cancelled request)",
    ["event", "state"],
)


class ModelRequests(Protocol):
    async def next_id(self) -> int: ...
    async def get(self, id: int, *, for_update: bool = True) -> ModelRequest | None: ...
    async def list(self, user_id: str | None, limit: int, offset: int) -> list[ModelRequest]: ...
    async def save(self, req: ModelRequest) -> None: ...


class ModelUow(AbstractUnitOfWork, Protocol):
    """The unit of work handlers need: ``repository.ModelUnitOfWork``, or a fake in tests."""

    requests: ModelRequests


async def request_model(uow: ModelUow, user_id: str, model_name: str) -> ModelRequest:
    async with uow:
        req = ModelRequest.request(await uow.requests.next_id(), user_id, model_name)
        await uow.requests.save(req)
        await uow.commit()
    log.debug("model request created", model_request_id=req.id, user_id=user_id)
    return req


async def approve(uow: ModelUow, id: int, actor: str | None = None) -> ModelRequest:
    return await _change(uow, id, lambda req: req.approve(actor))


async def reject(uow: ModelUow, id: int, reason: str, actor: str | None = None) -> ModelRequest:
    return await _change(uow, id, lambda req: req.reject(reason, actor))


async def cancel(
    uow: ModelUow, id: int, reason: str | None = None, actor: str | None = None
) -> ModelRequest:
    return await _change(uow, id, lambda req: req.cancel(reason, actor))


async def _change(uow: ModelUow, id: int, change: Callable[[ModelRequest], None]) -> ModelRequest:
    """Load the request locked, apply one domain action, store it with its events."""
    async with uow:
        req = await _get(uow, id)
        previous = req.state
        change(req)
        await uow.requests.save(req)
        _count(uow, req, previous)
        await uow.commit()
    log.debug("model request changed", model_request_id=id, previous=previous, state=req.state)
    return req


def _count(uow: ModelUow, req: ModelRequest, previous: State) -> None:
    """The saga's metrics of this change, once it committed."""
    transition = (previous.value, req.state.value, req.created_at)
    uow.after_commit(partial(metrics.record_saga_transition, "model", *transition))


async def get(uow: ModelUow, id: int) -> ModelRequest:
    async with uow:
        return await _get(uow, id, for_update=False)


async def list_requests(
    uow: ModelUow, user_id: str | None, limit: int, offset: int
) -> list[ModelRequest]:
    async with uow:
        return await uow.requests.list(user_id, limit, offset)


async def _get(uow: ModelUow, id: int, *, for_update: bool = True) -> ModelRequest:
    req = await uow.requests.get(id, for_update=for_update)
    if req is None:
        raise NotFound("model request", id)
    return req


# Events from core. The consumer runtime owns the unit of work and commits it.


async def on_progress(uow: ModelUow, event: core.ModelProgressed) -> None:
    await _apply(uow, event, lambda req: req.record_progress(event.step, event.total_steps))


async def on_completed(uow: ModelUow, event: core.ModelCompleted) -> None:
    refused = await _apply(uow, event, ModelRequest.complete)
    if refused is not None and refused.state == State.CANCELED:
        # The cancel landed after core's compensation check: tell core and the read side.
        refused.refuse_completion(event.id)
        await uow.requests.save(refused)
        uow.after_commit(metrics.SAGA_COMPENSATIONS.labels("model", "completion_refused").inc)


async def on_failed(uow: ModelUow, event: core.ModelFailed) -> None:
    await _apply(uow, event, lambda req: req.fail(event.reason))


async def _apply(
    uow: ModelUow, event: core.CoreJobEvent, change: Callable[[ModelRequest], None]
) -> ModelRequest | None:
    """Apply a core event; returns the request if its state refused the event."""
    name = event.event_type()
    # A request id that is no number fails the handler on every try, so the event is
    # parked on the dead-letter topic (target, by contrast, counts it as unknown).
    req = await uow.requests.get(int(event.request_id))
    if req is None:
        log.warning(
            "core event for unknown request", event_type=name, model_request_id=event.request_id
        )
        uow.after_commit(CORE_EVENTS_REFUSED.labels(name, "unknown").inc)
        return None
    previous = req.state
    try:
        change(req)
    except IllegalTransition as exc:
        # A cancelled request stays cancelled whatever core says: core's compensation
        # check should have stopped it, this is the last line of defence.
        level = log.warning if req.state == State.CANCELED else log.info
        level("core event refused", event_type=name, model_request_id=req.id, why=str(exc))
        uow.after_commit(CORE_EVENTS_REFUSED.labels(name, req.state.value).inc)
        return req
    await uow.requests.save(req)
    _count(uow, req, previous)
    return None


CORE_HANDLERS = {
    core.ModelProgressed: on_progress,
    core.ModelCompleted: on_completed,
    core.ModelFailed: on_failed,
}
