"""Pure transition tables for request lifecycles (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)
A = TypeVar("A", bound=StrEnum)


class IllegalTransition(Exception):
    """The current state does not allow the action; the API answers 409 with these fields."""

    def __init__(self, entity: str, id: object, state: StrEnum, action: StrEnum) -> None:
        super().__init__(f"cannot {action} {entity} {id}: it is {state}")
        self.entity = entity
        self.id = id
        self.state = state
        self.action = action


class TransitionTable(Generic[S, A]):
    def __init__(self, entity: str, table: Mapping[tuple[S, A], S]) -> None:
        self.entity = entity
        self.table = dict(table)

    def next(self, id: object, state: S, action: A) -> S:
        try:
            return self.table[(state, action)]
        except KeyError:
            raise IllegalTransition(self.entity, id, state, action) from None

    def allows(self, state: S, action: A) -> bool:
        return (state, action) in self.table

    def actions_from(self, state: S) -> list[A]:
        return [a for (s, a) in self.table if s == state]
