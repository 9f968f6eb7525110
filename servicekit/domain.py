"""The kernel's two domain pieces every service builds on (after cosmicpython's service
layer and eventsourcing's single aggregate base):

- ``AbstractUnitOfWork``: what a handler needs of a transaction (servicekit.db.UnitOfWork,
  or a fake in unit tests). A service's own protocol adds its repositories.
- ``Aggregate``: an entity whose lifecycle is a transition table and whose changes raise
  events, pulled by the unit of work into the outbox at commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from contracts import Event
from servicekit.statemachine import TransitionTable


class AbstractUnitOfWork(Protocol):
    """One transaction: ``async with uow: ...; await uow.commit()``."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def commit(self) -> None: ...
    def after_commit(self, callback: Callable[[], object]) -> None: ...


S = TypeVar("S", bound=StrEnum)
A = TypeVar("A", bound=StrEnum)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Aggregate(Generic[S, A]):
    """Moves through its ``lifecycle`` and collects the events it raises.

    A subclass is a dataclass declaring ``id``, ``state``, ``updated_at`` and
    ``events: list[Event]`` (its own fields keep their order and defaults).
    """

    lifecycle: ClassVar[TransitionTable[Any, Any]]

    id: int
    state: S
    updated_at: datetime
    events: list[Event]

    def pull_events(self) -> list[Event]:
        """The events raised since the last pull (the unit of work writes them out)."""
        pulled, self.events = self.events, []
        return pulled

    def _move(self, action: A, now: datetime | None = None) -> S:
        """Take ``action`` (``IllegalTransition`` if the state does not allow it); returns
        the state it left."""
        previous = self.state
        self.state = self.lifecycle.next(self.id, self.state, action)
        self.updated_at = now or utcnow()
        self._moved(previous)
        return previous

    def _moved(self, previous: S) -> None:
        """Hook: what a move from ``previous`` changes besides the state."""
