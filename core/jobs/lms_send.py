"""The LMS send that follows a completed extraction: one MIDAS bulk send per target,
idempotent by the target's key, so a retry or a re-drive never sends twice. It runs
no steps: the send is its finishing action, announced as LmsSent (or LmsFailed)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Protocol

from contracts import core as events
from core import metrics
from core.adapters.midas import MidasRefused, MidasRejected
from core.jobs.base import Complete, Fail, JobEvents, Kind, Lease, Outcome

if TYPE_CHECKING:
    from core.domain import Job
    from core.repository import CoreUnitOfWork


class LmsSender(Protocol):
    async def send_lms(
        self, idempotency_key: str, target_id: int, user_id: str, audience_size: int, message: str
    ) -> str: ...


class LmsSend:
    kind: ClassVar[Kind] = Kind.LMS
    events: ClassVar[JobEvents] = JobEvents(
        "target", events.LmsSent, events.LmsFailed, completion_fields=("midas_send_id",)
    )
    runs_steps: ClassVar[bool] = False

    def __init__(self, midas: LmsSender) -> None:
        self.midas = midas

    async def step(self, job: Job) -> None:
        raise NotImplementedError("an LMS send runs no steps")

    async def finish(self, job: Job, lease: Lease) -> Outcome:
        p = job.params
        try:
            send_id = await self.midas.send_lms(
                f"target-{p['targetId']}",
                int(p["targetId"]),
                str(p["userId"]),
                int(p["audienceSize"]),
                str(p["message"]),
            )
        except MidasRefused as exc:
            metrics.LMS_SENDS.labels("refused").inc()
            return Fail(str(exc))
        except MidasRejected as exc:
            metrics.LMS_SENDS.labels("rejected").inc()
            return Fail(str(exc), final=True)
        metrics.LMS_SENDS.labels("accepted").inc()
        return Complete({"midas_send_id": send_id})

    async def follow_up(self, job: Job, uow: CoreUnitOfWork, now: datetime, attempts: int) -> None:
        pass  # the end of the target's flow
