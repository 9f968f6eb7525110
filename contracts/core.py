"""Events published by core (jobs and workers) on ``core.events``.

As in the seed, ``id`` is core's job id and ``requestId`` the request it works
for (a string): ``{"eventType":"ModelCompleted","id":1,"type":"model",
"state":"completed","requestId":"1"}``. They are keyed by the request id.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from contracts.base import Event
from contracts.topics import CORE_EVENTS


class CoreJobEvent(Event):
    topic: ClassVar[str] = CORE_EVENTS
    context: ClassVar[str] = "core"

    type: Literal["model", "target"]
    state: str
    request_id: str

    @property
    def key(self) -> str:
        return self.request_id


class ModelProgressed(CoreJobEvent):
    type: Literal["model", "target"] = "model"
    state: str = "inProgress"
    step: int
    total_steps: int


class ModelCompleted(CoreJobEvent):
    type: Literal["model", "target"] = "model"
    state: str = "completed"


class ModelFailed(CoreJobEvent):
    type: Literal["model", "target"] = "model"
    state: str = "failed"
    reason: str


class TargetCompleted(CoreJobEvent):
    type: Literal["model", "target"] = "target"
    state: str = "targetCompleted"


class TargetFailed(CoreJobEvent):
    type: Literal["model", "target"] = "target"
    state: str = "failed"
    reason: str


class JobCanceled(CoreJobEvent):
    """A job stopped without completing: its request was cancelled (before a step, or
    found cancelled by the compensation check). No completion goes out for it."""

    state: str = "canceled"
    reason: str


class LmsSent(CoreJobEvent):
    """MIDAS accepted the LMS bulk send for a completed target (``requestId``)."""

    type: Literal["model", "target"] = "target"
    state: str = "lmsSent"
    midas_send_id: str


class LmsFailed(CoreJobEvent):
    """MIDAS kept refusing the LMS bulk send; core gave up after its attempts."""

    type: Literal["model", "target"] = "target"
    state: str = "lmsFailed"
    reason: str
