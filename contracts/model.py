"""Events published by the model context on ``model.events``."""

from __future__ import annotations

from typing import ClassVar

from contracts.base import Event
from contracts.topics import MODEL_EVENTS


class ModelRequestEvent(Event):
    topic: ClassVar[str] = MODEL_EVENTS
    context: ClassVar[str] = "model"

    state: str
    user_id: str
    model_name: str


class Requested(ModelRequestEvent):
    pass


class Approved(ModelRequestEvent):
    pass


class Rejected(ModelRequestEvent):
    reason: str


class RequestCanceled(ModelRequestEvent):
    reason: str | None = None


class StateChanged(ModelRequestEvent):
    """Training moved the request on (started, a step done, completed, failed)."""

    previous_state: str
    progress: int = 0
    step: int = 0
    total_steps: int = 0
    reason: str | None = None
