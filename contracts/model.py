"""Events published by the model context on ``model.events``."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from contracts.base import Event, extension
from contracts.topics import MODEL_EVENTS


class ModelState(StrEnum):
    """A model request's states, as its events' ``state`` spells them."""

    REQUESTED = "requested"
    APPROVED = "approved"
    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "requestCanceled"
    REJECTED = "rejected"


class ModelRequestEvent(Event):
    topic: ClassVar[str] = MODEL_EVENTS
    context: ClassVar[str] = "model"

    state: str
    user_id: str
    model_name: str


class Requested(ModelRequestEvent):
    pass


class Approved(ModelRequestEvent):
    previous_state: str = ModelState.REQUESTED.value
    actor: str | None = extension("who did it: the admin or user (token subject)")


class Rejected(ModelRequestEvent):
    previous_state: str = ModelState.REQUESTED.value
    reason: str
    actor: str | None = extension("who did it: the admin or user (token subject)")


class RequestCanceled(ModelRequestEvent):
    previous_state: str
    reason: str | None = None
    actor: str | None = extension("who did it: the admin or user (token subject)")


class CompletionRefused(ModelRequestEvent):
    """Compensation: core announced a completion the request's state did not allow
    (it was cancelled after core's check). The request stays as it is (``state``);
    core ends its job as cancelled and the read side learns the completion is void.
    """

    job_id: int
    reason: str


class StateChanged(ModelRequestEvent):
    """Training moved the request to another state (started, completed, failed).

    A step within training is not announced: core's ``ModelProgressed`` is each step.
    Earlier releases of model announced every step as a ``StateChanged`` that keeps the
    state (``is_step``); such events may still be on a topic (Kafka's retention, a
    replay), and the consumers that follow states skip them (``changes_state``).
    """

    previous_state: str
    progress: int = 0
    step: int = 0
    total_steps: int = 0
    reason: str | None = None

    @property
    def is_step(self) -> bool:
        """A training step done: the progress moved, the state did not."""
        return self.state == self.previous_state


def changes_state(event: Event) -> bool:
    """False for a training step (a ``StateChanged`` that keeps the state): what a consumer
    that follows the states (target, notice) or takes steps from core (mypage) skips."""
    return not (isinstance(event, StateChanged) and event.is_step)
