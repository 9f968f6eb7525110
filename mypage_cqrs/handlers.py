"""What mypage_cqrs does: join each event into its row and its request's timeline; serve them.

The consumer runtime owns the unit of work of an event (inbox claim, this
handler, commit), so a redelivered event is skipped; the apply rule makes any
event that does get through twice, or late, change nothing anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from contracts import Event, model
from contracts.topics import EVENT_TOPICS
from mypage_cqrs import timeline, view
from mypage_cqrs.timeline import Entry
from mypage_cqrs.view import MyRequest
from servicekit.consumer import applies_only
from servicekit.domain import AbstractUnitOfWork
from servicekit.http import NotFound


class MyRequests(Protocol):
    async def get(self, id: str, *, for_update: bool = False) -> MyRequest | None: ...
    async def add_if_absent(self, row: MyRequest) -> bool: ...
    async def update(self, row: MyRequest) -> None: ...
    async def list(self, user_id: str | None, limit: int, offset: int) -> list[MyRequest]: ...


class TimelineEntries(Protocol):
    async def add(self, entries: Iterable[Entry]) -> None: ...
    async def of(self, request: str) -> list[Entry]: ...


class MypageUow(AbstractUnitOfWork, Protocol):
    """The unit of work handlers need: ``repository.MypageUnitOfWork``, or a fake in tests."""

    requests: MyRequests
    timeline: TimelineEntries


@applies_only(to=model.changes_state)
async def on_event(uow: MypageUow, event: Event) -> None:
    """Join ``event`` into its row and its timeline, in the caller's transaction (which
    commits). A training step of model's is skipped: core's ``ModelProgressed`` brings
    the same step to the row and is the step's timeline entry."""
    change = view.contribution(event)
    if change is not None:
        await _join(uow, change, event)
    # After the row: its update and the entries then go as one statement at the commit.
    await uow.timeline.add(timeline.entries(event))


async def _join(uow: MypageUow, change: MyRequest, event: Event) -> None:
    """Lock-or-insert: most events find their row (one statement); a new row is inserted,
    and two writers of it (the live consumer and a replay's catch-up) cannot both insert
    it: the second one's insert does nothing, and it merges under the row lock."""
    row = await uow.requests.get(change.id, for_update=True)
    if row is None:
        if await uow.requests.add_if_absent(change):
            return
        row = await uow.requests.get(change.id, for_update=True)
    if row is None:  # cannot happen: rows are never deleted while a transaction holds one
        raise RuntimeError(f"my request {change.id} vanished")
    merged = view.apply(row, event)
    if merged is not None and merged != row:
        await uow.requests.update(merged)


async def get(uow: MypageUow, id: str) -> MyRequest:
    async with uow:
        row = await uow.requests.get(id)
    if row is None or not row.visible:
        raise NotFound("my request", id)
    return row


async def request_timeline(
    uow: MypageUow, kind: str, request_id: int
) -> tuple[MyRequest, list[Entry]]:
    """A served request and its timeline, in order."""
    id = view.row_id(kind, request_id)
    async with uow:
        row = await uow.requests.get(id)
        if row is None or not row.visible:
            raise NotFound("my request", id)
        found = await uow.timeline.of(id)
    return row, timeline.ordered(found)


async def list_requests(
    uow: MypageUow, user_id: str | None, limit: int, offset: int
) -> list[MyRequest]:
    async with uow:
        return await uow.requests.list(user_id, limit, offset)


# Every event type of the three topics that can change a row or a timeline; others are skipped.
HANDLERS = {
    contract: on_event
    for contract in Event.registry.values()
    if contract.topic in EVENT_TOPICS
    and issubclass(contract, view.CONTRIBUTING + timeline.RECORDED)
}
