"""What the target context does: commands from the API, events from model and core.

Every handler runs in one unit of work, so the target rows, target's record of
model states and the events they raise are committed together; metrics count a
change once it committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import NamedTuple, Protocol

import structlog
from prometheus_client import Counter

from contracts import core
from contracts import model as model_events
from servicekit import metrics
from servicekit.consumer import applies_only
from servicekit.domain import AbstractUnitOfWork
from servicekit.http import NotFound
from servicekit.statemachine import IllegalTransition
from target.domain import (
    MODEL_COMPLETED,
    MODEL_TERMINAL,
    ModelGone,
    ModelRecord,
    State,
    TargetRequest,
)
from target.model_view import AskModel

log = structlog.get_logger(__name__)

# Who cancels a target whose model will never complete: target itself (the saga's compensation).
COMPENSATION_ACTOR = "target"

CORE_EVENTS_REFUSED = Counter(
    "target_core_events_refused_total",
    "Events from core the target's state did not allow (e.g. completion of a cancelled target)",
    ["event", "state"],
)


class TargetRequests(Protocol):
    async def next_id(self) -> int: ...
    async def get(self, id: int, *, for_update: bool = True) -> TargetRequest | None: ...
    async def list(self, user_id: str | None, limit: int, offset: int) -> list[TargetRequest]: ...
    async def open_for_model(self, model_request_id: int) -> list[TargetRequest]: ...
    async def save(self, req: TargetRequest) -> None: ...


class ModelRecords(Protocol):
    async def lock(self, model_request_id: int, *, shared: bool = False) -> None: ...
    async def get(self, model_request_id: int) -> ModelRecord | None: ...
    async def states(self, model_request_ids: Iterable[int]) -> dict[int, str]: ...
    async def save(self, record: ModelRecord) -> None: ...


class TargetUow(AbstractUnitOfWork, Protocol):
    """The unit of work handlers need: ``repository.TargetUnitOfWork``, or a fake in tests."""

    targets: TargetRequests
    models: ModelRecords


class TargetView(NamedTuple):
    """A target with what target knows of its model's state (None: nothing yet)."""

    target: TargetRequest
    model_state: str | None


async def request_target(
    uow: TargetUow, user_id: str, type: str, model_request_id: int, *, any_model: bool = False
) -> TargetView:
    """Accepted whatever model and core are doing, unless the model will never complete.

    A user may ask only for a target of their own model that target knows (from model's
    events); any other model answers as one that does not exist, before anything about its
    state is told. ``any_model`` (admins, the platform's services) allows any model, also
    one whose events have not reached target yet.
    """
    async with uow:
        await uow.models.lock(model_request_id, shared=True)
        model = await uow.models.get(model_request_id)
        if not any_model and (model is None or not model.belongs_to(user_id)):
            raise NotFound("model request", model_request_id)
        if model is not None and model.gone:
            raise ModelGone(model_request_id, model.state)
        req = TargetRequest.request(await uow.targets.next_id(), user_id, type, model_request_id)
        await uow.targets.save(req)
        await uow.commit()
    log.debug(
        "target request created",
        target_request_id=req.id,
        user_id=user_id,
        model_request_id=model_request_id,
        model_state=model.state if model else None,
    )
    return TargetView(req, model.state if model else None)


async def approve(
    uow: TargetUow, id: int, actor: str | None = None, ask_model: AskModel | None = None
) -> TargetView:
    """Approve the target once its model has completed; where target's record of the model
    is behind, model's own answer counts (``ask_model``, see ``target.model_view``)."""
    if ask_model is not None:
        await _catch_up_with_model(uow, id, ask_model)
    return await _change(uow, id, lambda req, model_state: req.approve(model_state, actor))


async def _catch_up_with_model(uow: TargetUow, id: int, ask_model: AskModel) -> None:
    """Record the model's completion from model's answer, if the events have not yet."""
    async with uow:
        req = await _get(uow, id, for_update=False)
        record = await uow.models.get(req.model_request_id)
        if record is not None and record.state in MODEL_TERMINAL:
            return  # completed (nothing to catch up) or gone (no answer changes that)
        answer = await ask_model(req.model_request_id)
        if answer is None or answer.state != MODEL_COMPLETED:
            return
        await uow.models.lock(req.model_request_id)
        record = await uow.models.get(req.model_request_id)
        if record is None:
            record = ModelRecord(req.model_request_id, answer.state, user_id=answer.user_id)
        elif not record.record(answer.state) | record.record_owner(answer.user_id or ""):
            return
        await uow.models.save(record)
        await uow.commit()
    log.info("model completion taken from model", model_request_id=req.model_request_id)


async def reject(uow: TargetUow, id: int, reason: str, actor: str | None = None) -> TargetView:
    return await _change(uow, id, lambda req, _: req.reject(reason, actor))


async def cancel(
    uow: TargetUow, id: int, reason: str | None = None, actor: str | None = None
) -> TargetView:
    return await _change(uow, id, lambda req, _: req.cancel(reason, actor))


async def _change(
    uow: TargetUow, id: int, change: Callable[[TargetRequest, str | None], None]
) -> TargetView:
    """Load the target locked, apply one domain action, store it with its events."""
    async with uow:
        req = await _get(uow, id)
        model = await uow.models.get(req.model_request_id)
        model_state = model.state if model else None
        previous = req.state
        change(req, model_state)
        await uow.targets.save(req)
        _count(uow, req, previous)
        await uow.commit()
    log.debug(
        "target request changed",
        target_request_id=id,
        previous=previous,
        state=req.state,
        reason=req.reason,
    )
    return TargetView(req, model_state)


def _count(uow: TargetUow, req: TargetRequest, previous: State) -> None:
    """The saga's metrics of this change, once it committed."""
    transition = (previous.value, req.state.value, req.created_at)
    uow.after_commit(partial(metrics.record_saga_transition, "target", *transition))


async def get(uow: TargetUow, id: int) -> TargetView:
    async with uow:
        req = await _get(uow, id, for_update=False)
        model = await uow.models.get(req.model_request_id)
        return TargetView(req, model.state if model else None)


async def list_targets(
    uow: TargetUow, user_id: str | None, limit: int, offset: int
) -> list[TargetView]:
    async with uow:
        found = await uow.targets.list(user_id, limit, offset)
        states = await uow.models.states(r.model_request_id for r in found)
        return [TargetView(r, states.get(r.model_request_id)) for r in found]


async def _get(uow: TargetUow, id: int, *, for_update: bool = True) -> TargetRequest:
    req = await uow.targets.get(id, for_update=for_update)
    if req is None:
        raise NotFound("target request", id)
    return req


# Events from model and core. The consumer runtime owns the unit of work and commits it.


@applies_only(to=model_events.changes_state)  # a training step leaves the state recorded
async def on_model_event(uow: TargetUow, event: model_events.ModelRequestEvent) -> None:
    """Keep target's record of the model's state; when the model will never complete,
    cancel its open targets in the same transaction (compensation)."""
    await uow.models.lock(event.id)
    record = await uow.models.get(event.id)
    if record is None:
        record = ModelRecord(event.id, event.state, user_id=event.user_id)
    elif not record.record(event.state) | record.record_owner(event.user_id):
        log.debug(
            "model state unchanged",
            event_type=event.event_type(),
            model_request_id=event.id,
            state=record.state,
            announced=event.state,
        )
        return
    await uow.models.save(record)
    log.debug(
        "model state recorded",
        event_type=event.event_type(),
        model_request_id=event.id,
        state=record.state,
    )
    if record.gone:
        await _compensate(uow, record)


async def _compensate(uow: TargetUow, model: ModelRecord) -> None:
    reason = f"model request {model.model_request_id} was {model.state}"
    for req in await uow.targets.open_for_model(model.model_request_id):
        previous = req.state
        req.cancel(reason, actor=COMPENSATION_ACTOR)
        await uow.targets.save(req)
        _count(uow, req, previous)
        uow.after_commit(metrics.SAGA_COMPENSATIONS.labels("target", "targets_canceled").inc)
        log.info(
            "target request cancelled by compensation",
            target_request_id=req.id,
            model_request_id=model.model_request_id,
            previous=previous,
            reason=reason,
        )


async def on_completed(uow: TargetUow, event: core.TargetCompleted) -> None:
    await _apply(uow, event, TargetRequest.complete)


async def on_failed(uow: TargetUow, event: core.TargetFailed) -> None:
    await _apply(uow, event, lambda req: req.fail(event.reason))


async def _apply(
    uow: TargetUow, event: core.CoreJobEvent, change: Callable[[TargetRequest], None]
) -> None:
    """Apply a core event to the target it is about; a refused one changes nothing."""
    name = event.event_type()
    digits = event.request_id.isascii() and event.request_id.isdigit()
    req = await uow.targets.get(int(event.request_id)) if digits else None
    if req is None:
        log.warning(
            "core event for unknown target", event_type=name, target_request_id=event.request_id
        )
        uow.after_commit(CORE_EVENTS_REFUSED.labels(name, "unknown").inc)
        return
    previous = req.state
    try:
        change(req)
    except IllegalTransition as exc:
        # E.g. the target was cancelled while core extracted it: it stays cancelled.
        log.warning("core event refused", event_type=name, target_request_id=req.id, why=str(exc))
        uow.after_commit(CORE_EVENTS_REFUSED.labels(name, req.state.value).inc)
        return
    await uow.targets.save(req)
    _count(uow, req, previous)
    log.debug(
        "target request changed",
        event_type=name,
        target_request_id=req.id,
        previous=previous,
        state=req.state,
        reason=req.reason,
    )


MODEL_HANDLERS = {
    contract: on_model_event
    for contract in (
        model_events.Requested,
        model_events.Approved,
        model_events.Rejected,
        model_events.RequestCanceled,
        model_events.StateChanged,
        model_events.CompletionRefused,
    )
}
CORE_HANDLERS = {core.TargetCompleted: on_completed, core.TargetFailed: on_failed}
HANDLERS = {**MODEL_HANDLERS, **CORE_HANDLERS}
