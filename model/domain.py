"""ModelRequest: a pure aggregate whose lifecycle is a transition table.

requested --approve--> approved --start--> inProgress --complete--> completed
                                                      --fail-----> failed
requested --reject--> rejected
requested / approved / inProgress --cancel--> requestCanceled
failed --progress/complete--> inProgress / completed   (core's job re-driven by an admin)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from contracts import Event
from contracts import model as events
from contracts.model import ModelState as State
from servicekit.domain import Aggregate, utcnow
from servicekit.statemachine import TransitionTable


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    START = "start"
    PROGRESS = "progress"
    COMPLETE = "complete"
    FAIL = "fail"


LIFECYCLE: TransitionTable[State, Action] = TransitionTable(
    "model request",
    {
        (State.REQUESTED, Action.APPROVE): State.APPROVED,
        (State.REQUESTED, Action.REJECT): State.REJECTED,
        (State.REQUESTED, Action.CANCEL): State.CANCELED,
        (State.APPROVED, Action.CANCEL): State.CANCELED,
        (State.IN_PROGRESS, Action.CANCEL): State.CANCELED,
        (State.APPROVED, Action.START): State.IN_PROGRESS,
        (State.IN_PROGRESS, Action.PROGRESS): State.IN_PROGRESS,
        (State.IN_PROGRESS, Action.COMPLETE): State.COMPLETED,
        (State.APPROVED, Action.FAIL): State.FAILED,
        (State.IN_PROGRESS, Action.FAIL): State.FAILED,
        # An admin re-drove the failed job: it reports progress and completes again.
        (State.FAILED, Action.PROGRESS): State.IN_PROGRESS,
        (State.FAILED, Action.COMPLETE): State.COMPLETED,
    },
)


@dataclass(eq=False)
class ModelRequest(Aggregate[State, Action]):
    lifecycle: ClassVar[TransitionTable[State, Action]] = LIFECYCLE

    id: int
    user_id: str
    model_name: str
    state: State = State.REQUESTED
    reason: str | None = None
    step: int = 0
    total_steps: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def request(cls, id: int, user_id: str, model_name: str) -> ModelRequest:
        req = cls(id=id, user_id=user_id, model_name=model_name)
        req._announce(events.Requested)
        return req

    @property
    def progress(self) -> int:
        """Training progress in percent."""
        if self.state == State.COMPLETED:
            return 100
        return self.step * 100 // self.total_steps if self.total_steps else 0

    def approve(self, actor: str | None = None) -> None:
        previous = self._move(Action.APPROVE)
        self._announce(events.Approved, previous_state=previous.value, actor=actor)

    def reject(self, reason: str, actor: str | None = None) -> None:
        previous = self._move(Action.REJECT)
        self.reason = reason
        self._announce(events.Rejected, previous_state=previous.value, reason=reason, actor=actor)

    def cancel(self, reason: str | None = None, actor: str | None = None) -> None:
        previous = self._move(Action.CANCEL)
        self.reason = reason
        self._announce(
            events.RequestCanceled, previous_state=previous.value, reason=reason, actor=actor
        )

    def refuse_completion(self, job_id: int) -> None:
        """Core completed a job this request's state does not allow: say so (compensation)."""
        self._announce(
            events.CompletionRefused,
            job_id=job_id,
            reason=f"completion refused: model request {self.id} is {self.state.value}",
        )

    def record_progress(self, step: int, total_steps: int) -> None:
        """A training step finished. Steps that arrive late (not beyond the last) change nothing.

        Only a step that moves the state (the first, or the first after a re-drive) is
        announced: the others are core's ``ModelProgressed`` already, and the request
        shows them (``step``, ``progress``)."""
        if self.state == State.IN_PROGRESS and step <= self.step:
            return
        previous = self._move(Action.START if self.state == State.APPROVED else Action.PROGRESS)
        self.step, self.total_steps = step, total_steps
        if self.state != previous:
            self._changed(previous)

    def complete(self) -> None:
        previous = self._move(Action.COMPLETE)
        self.step = self.total_steps
        self._changed(previous)

    def fail(self, reason: str) -> None:
        previous = self._move(Action.FAIL)
        self.reason = reason
        self._changed(previous, reason=reason)

    def _moved(self, previous: State) -> None:
        if previous == State.FAILED:  # its job was re-driven: the failure is over
            self.reason = None

    def _changed(self, previous: State, reason: str | None = None) -> None:
        self._announce(
            events.StateChanged,
            previous_state=previous.value,
            progress=self.progress,
            step=self.step,
            total_steps=self.total_steps,
            reason=reason,
        )

    def _announce(self, event_type: type[events.ModelRequestEvent], **extra: object) -> None:
        self.events.append(
            event_type(
                id=self.id,
                state=self.state.value,
                user_id=self.user_id,
                model_name=self.model_name,
                **extra,
            )
        )
