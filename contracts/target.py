"""Events published by the target context on ``target.events``."""

from __future__ import annotations

from typing import ClassVar

from contracts.base import Event
from contracts.topics import TARGET_EVENTS


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
    pass


class TargetRejected(TargetRequestEvent):
    reason: str


class TargetCanceled(TargetRequestEvent):
    reason: str | None = None
