"""What notice does with events: store the chat message a state change calls for.

Handlers only insert a pending notification in the consumer's transaction (the
inbox and the unique event id keep a redelivered event to one row); the sender
worker (``notice.sender``) posts it to the chat.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from contracts import Event, core, model, target
from notice.messages import Notice, TargetInfo, notice_for, target_info
from notice.repository import Notification
from servicekit.consumer import Handler, applies_only
from servicekit.domain import AbstractUnitOfWork
from servicekit.http import NotFound

log = structlog.get_logger(__name__)


class Notifications(Protocol):
    async def add(self, notice: Notice, event_id: str, event_type: str) -> None: ...
    async def get(self, id: int) -> Notification | None: ...
    async def list(self, user_id: str | None, limit: int, offset: int) -> list[Notification]: ...


class Targets(Protocol):
    async def remember(self, info: TargetInfo) -> None: ...
    async def get(self, id: int) -> TargetInfo | None: ...


class NoticeUow(AbstractUnitOfWork, Protocol):
    """The unit of work handlers need: ``repository.NoticeUnitOfWork``, or a fake in tests."""

    notifications: Notifications
    targets: Targets


# Events from the topics. The consumer runtime owns the unit of work and commits it.


@applies_only(to=model.changes_state)  # a training step tells the chat nothing
async def on_model_event(uow: NoticeUow, event: model.ModelRequestEvent) -> None:
    await _store(uow, event, notice_for(event))


async def on_target_event(uow: NoticeUow, event: target.TargetRequestEvent) -> None:
    await uow.targets.remember(target_info(event))
    await _store(uow, event, notice_for(event))


async def on_lms_event(uow: NoticeUow, event: core.LmsSent | core.LmsFailed) -> None:
    known = await uow.targets.get(int(event.request_id))
    if known is None:
        log.warning("LMS outcome for a target notice has not seen", target_id=event.request_id)
    await _store(uow, event, notice_for(event, known))


async def _store(uow: NoticeUow, event: Event, notice: Notice | None) -> None:
    if notice is None:
        return
    await uow.notifications.add(notice, event.event_id, event.event_type())
    log.debug(
        "notification queued",
        request_kind=notice.request_kind,
        request_id=notice.request_id,
        event_type=event.event_type(),
    )


# Reads for the API.


async def get(uow: NoticeUow, id: int) -> Notification:
    async with uow:
        found = await uow.notifications.get(id)
    if found is None:
        raise NotFound("notice", id)
    return found


async def list_notices(
    uow: NoticeUow, user_id: str | None, limit: int, offset: int
) -> list[Notification]:
    async with uow:
        return await uow.notifications.list(user_id, limit, offset)


# CompletionRefused (model) and JobCanceled (core) change no request's state, and
# progress reaches the chat through model's StateChanged: none of them is handled.
_MODEL = (model.Requested, model.Approved, model.Rejected, model.RequestCanceled)
_TARGET = (
    target.TargetRequested,
    target.TargetApproved,
    target.TargetRejected,
    target.TargetCanceled,
    target.TargetStateChanged,
)

HANDLERS: dict[type[Event], Handler] = {
    **{e: on_model_event for e in (*_MODEL, model.StateChanged)},
    **{e: on_target_event for e in _TARGET},
    core.LmsSent: on_lms_event,
    core.LmsFailed: on_lms_event,
}
