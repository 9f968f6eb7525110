"""Events published by the target context on ``target.events``."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from contracts.base import Event, extension
from contracts.topics import TARGET_EVENTS


class TargetState(StrEnum):
    """A target request's states, as its events' ``state`` spells them."""

    REQUESTED = "requested"
    APPROVED = "approved"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELED = "canceled"


class TargetRequestEvent(Event):
    topic: ClassVar[str] = TARGET_EVENTS
    context: ClassVar[str] = "target"

    state: str
    user_id: str
    type: str
    model_request_id: int


class TargetRequested(TargetRequestEvent):
    pass


class TargetApproved(TargetRequestEvent):
    previous_state: str = TargetState.REQUESTED.value
    actor: str | None = extension("who did it: the admin or user (token subject)")


class TargetRejected(TargetRequestEvent):
    previous_state: str = TargetState.REQUESTED.value
    reason: str
    actor: str | None = extension("who did it: the admin or user (token subject)")


class TargetCanceled(TargetRequestEvent):
    """By the user, or by compensation when the target's model was cancelled, rejected
    or failed (``reason`` says which)."""

    previous_state: str
    reason: str | None = None
    actor: str | None = extension(
        "who did it: the admin or user (token subject); target for a compensation"
    )


class TargetStateChanged(TargetRequestEvent):
    """Extraction moved the target on: ``completed`` or ``failed`` (as core reported,
    and as the target's state allowed)."""

    previous_state: str
    reason: str | None = None
