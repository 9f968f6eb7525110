"""TargetRequest: a pure aggregate whose lifecycle is a transition table.

requested --approve--> approved --complete--> completed
                                --fail-----> failed
requested --reject--> rejected
requested / approved --cancel--> canceled
failed --complete--> completed   (core's extraction re-driven by an admin)

Approval also needs the target's model to have completed. Target knows that only
from model's events, kept as a :class:`ModelRecord` per model request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from contracts import Event
from contracts import target as events
from contracts.model import ModelState
from contracts.target import TargetState as State
from servicekit.domain import Aggregate, utcnow
from servicekit.statemachine import IllegalTransition, TransitionTable


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    COMPLETE = "complete"
    FAIL = "fail"


LIFECYCLE: TransitionTable[State, Action] = TransitionTable(
    "target request",
    {
        (State.REQUESTED, Action.APPROVE): State.APPROVED,
        (State.REQUESTED, Action.REJECT): State.REJECTED,
        (State.REQUESTED, Action.CANCEL): State.CANCELED,
        (State.APPROVED, Action.CANCEL): State.CANCELED,
        (State.APPROVED, Action.COMPLETE): State.COMPLETED,
        (State.APPROVED, Action.FAIL): State.FAILED,
        (State.FAILED, Action.COMPLETE): State.COMPLETED,  # its job was re-driven
    },
)

# Model request states, as model publishes them (contracts.model, not model's code).
MODEL_COMPLETED = ModelState.COMPLETED
# A model in one of these will never complete: its targets are cancelled (compensation).
MODEL_GONE = frozenset({ModelState.REJECTED, ModelState.CANCELED, ModelState.FAILED})
MODEL_TERMINAL = MODEL_GONE | {ModelState.COMPLETED}


class ModelNotCompleted(IllegalTransition):
    """Approval refused because the target's model has not completed (as far as target knows)."""

    def __init__(self, target: TargetRequest, model_state: str | None) -> None:
        super().__init__(LIFECYCLE.entity, target.id, target.state, Action.APPROVE)
        known = model_state if model_state is not None else "unknown to target yet"
        self.args = (
            f"cannot approve target request {target.id}: "
            f"its model request {target.model_request_id} is {known}, not completed",
        )
        self.model_request_id = target.model_request_id
        self.model_state = model_state


class ModelGone(IllegalTransition):
    """A new target for a model that will never complete: refused.

    ``currentState`` is the model's state and ``action`` is ``request``.
    """

    def __init__(self, model_request_id: int, model_state: str) -> None:
        Exception.__init__(
            self,
            f"cannot request a target of model request {model_request_id}: "
            f"the model request is {model_state}",
        )
        self.entity = "model request"
        self.id = model_request_id
        self.state = model_state  # type: ignore[assignment]  # model's wire value
        self.action = "request"  # type: ignore[assignment]
        self.model_request_id = model_request_id
        self.model_state = model_state


@dataclass(eq=False)
class ModelRecord:
    """Target's own copy of one model request's state, built only from model's events."""

    model_request_id: int
    state: str
    updated_at: datetime = field(default_factory=utcnow)
    user_id: str | None = None  # whose model it is (every model event names the owner)

    @property
    def gone(self) -> bool:
        return self.state in MODEL_GONE

    def belongs_to(self, user_id: str) -> bool:
        return self.user_id is not None and self.user_id == user_id

    def record_owner(self, user_id: str) -> bool:
        """Take the owner an event names, where target did not know it; False otherwise."""
        if self.user_id is not None or not user_id:
            return False
        self.user_id = user_id
        return True

    def record(self, state: str) -> bool:
        """Take the state model announced; False when that changes nothing.

        A terminal state is never overwritten by a non-terminal one (a late or
        replayed progress event cannot bring a cancelled model back).
        """
        if state == self.state or (self.state in MODEL_TERMINAL and state not in MODEL_TERMINAL):
            return False
        self.state = state
        self.updated_at = utcnow()
        return True


@dataclass(eq=False)
class TargetRequest(Aggregate[State, Action]):
    lifecycle: ClassVar[TransitionTable[State, Action]] = LIFECYCLE

    id: int
    user_id: str
    type: str
    model_request_id: int
    state: State = State.REQUESTED
    reason: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def request(cls, id: int, user_id: str, type: str, model_request_id: int) -> TargetRequest:
        req = cls(id=id, user_id=user_id, type=type, model_request_id=model_request_id)
        req._announce(events.TargetRequested)
        return req

    def approve(self, model_state: str | None, actor: str | None = None) -> None:
        """Approve, if the target's state allows it and its model has completed."""
        LIFECYCLE.next(self.id, self.state, Action.APPROVE)  # the target's own state first
        if model_state != MODEL_COMPLETED:
            raise ModelNotCompleted(self, model_state)
        previous = self._move(Action.APPROVE)
        self._announce(events.TargetApproved, previous_state=previous.value, actor=actor)

    def reject(self, reason: str, actor: str | None = None) -> None:
        previous = self._move(Action.REJECT)
        self.reason = reason
        self._announce(
            events.TargetRejected, previous_state=previous.value, reason=reason, actor=actor
        )

    def cancel(self, reason: str | None = None, actor: str | None = None) -> None:
        previous = self._move(Action.CANCEL)
        self.reason = reason
        self._announce(
            events.TargetCanceled, previous_state=previous.value, reason=reason, actor=actor
        )

    def complete(self) -> None:
        previous = self._move(Action.COMPLETE)
        self._announce(events.TargetStateChanged, previous_state=previous.value)

    def fail(self, reason: str) -> None:
        previous = self._move(Action.FAIL)
        self.reason = reason
        self._announce(events.TargetStateChanged, previous_state=previous.value, reason=reason)

    def _moved(self, previous: State) -> None:
        if previous == State.FAILED:  # its job was re-driven: the failure is over
            self.reason = None

    def _announce(self, event_type: type[events.TargetRequestEvent], **extra: object) -> None:
        self.events.append(
            event_type(
                id=self.id,
                state=self.state.value,
                user_id=self.user_id,
                type=self.type,
                model_request_id=self.model_request_id,
                **extra,
            )
        )
