"""Events published by core (jobs and workers) on ``core.events``.

As in the seed, ``id`` is core's job id and ``requestId`` the request it works
for (a string): ``{"eventType":"ModelCompleted","id":1,"type":"model",
"state":"completed","requestId":"1"}``. They are keyed by the request id.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from contracts.base import Event, extension
from contracts.topics import CORE_EVENTS


class JobReport(StrEnum):
    """What core's events say of a request's job, as their ``state`` spells it."""

    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    FAILED = "failed"
    TARGET_COMPLETED = "targetCompleted"
    CANCELED = "canceled"
    LMS_SENT = "lmsSent"
    LMS_FAILED = "lmsFailed"


class CoreJobEvent(Event):
    topic: ClassVar[str] = CORE_EVENTS
    context: ClassVar[str] = "core"

    type: Literal["model", "target"]
    state: str
    request_id: str

    @property
    def key(self) -> str:
        return self.request_id


class Check(BaseModel):
    """The compensation check's answer: what model said of the request before core
    announced (or did not announce) its completion."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    outcome: str  # complete | canceled | refused | notFound
    model_state: str | None = None  # as model answered (None: model does not know it)
    tries: int = 1  # asks until model answered (the ones before found it unreachable)


class ModelProgressed(CoreJobEvent):
    type: Literal["model", "target"] = "model"
    state: str = JobReport.IN_PROGRESS.value
    step: int
    total_steps: int
    batch: int | None = extension("the Vertica batch the step trained on (1-based number)")
    batch_offset: int | None = extension("the batch's first row in the training data")
    batch_rows: int | None = extension("rows in the batch")
    total_rows: int | None = extension("rows of training data Vertica has")


class ModelCompleted(CoreJobEvent):
    type: Literal["model", "target"] = "model"
    state: str = JobReport.COMPLETED.value
    check: Check | None = extension("the compensation check that allowed the completion")


class ModelFailed(CoreJobEvent):
    type: Literal["model", "target"] = "model"
    state: str = JobReport.FAILED.value
    reason: str


class TargetCompleted(CoreJobEvent):
    type: Literal["model", "target"] = "target"
    state: str = JobReport.TARGET_COMPLETED.value


class TargetFailed(CoreJobEvent):
    type: Literal["model", "target"] = "target"
    state: str = JobReport.FAILED.value
    reason: str


class JobCanceled(CoreJobEvent):
    """A job stopped without completing: its request was cancelled (before a step, or
    found cancelled by the compensation check). No completion goes out for it."""

    state: str = JobReport.CANCELED.value
    reason: str
    check: Check | None = extension("the compensation check, when it found the request gone")


class LmsSent(CoreJobEvent):
    """MIDAS accepted the LMS bulk send for a completed target (``requestId``)."""

    type: Literal["model", "target"] = "target"
    state: str = JobReport.LMS_SENT.value
    midas_send_id: str


class LmsFailed(CoreJobEvent):
    """MIDAS kept refusing the LMS bulk send; core gave up after its attempts."""

    type: Literal["model", "target"] = "target"
    state: str = JobReport.LMS_FAILED.value
    reason: str
