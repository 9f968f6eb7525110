"""Extraction, for an approved target request: its steps extract the audience
(simulated); its completion queues the LMS send (core.jobs.lms_send) in the same
transaction, so the send is owed from the moment the target is complete."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from contracts import core as events
from core.jobs.base import Complete, JobEvents, Kind, Lease, Outcome, Pace

if TYPE_CHECKING:
    from core.domain import Job
    from core.repository import CoreUnitOfWork


def audience_size(target_id: str) -> int:
    """The extracted audience (simulated): a stable number per target."""
    return 1_000 + zlib.crc32(f"target-{target_id}".encode()) % 9_000


class Extraction:
    kind: ClassVar[Kind] = Kind.TARGET
    events: ClassVar[JobEvents] = JobEvents("target", events.TargetCompleted, events.TargetFailed)
    runs_steps: ClassVar[bool] = True

    def __init__(self, pace: Pace) -> None:
        self.pace = pace

    async def step(self, job: Job) -> None:
        await self.pace.step()  # extraction (simulated)

    async def finish(self, job: Job, lease: Lease) -> Outcome:
        return Complete({"audienceSize": audience_size(job.request_id)})

    async def follow_up(self, job: Job, uow: CoreUnitOfWork, now: datetime, attempts: int) -> None:
        """The MIDAS send that follows a completed extraction (one per target)."""
        size = int(job.result.get("audienceSize", audience_size(job.request_id)))
        message = f"[nocode] {job.name}: a message for the {size} people of target {job.id}"
        params = {
            "targetId": int(job.request_id),
            "userId": job.user_id,
            "audienceSize": size,
            "message": message,
        }
        send = job.follow_up(await uow.jobs.next_id(), Kind.LMS, 1, attempts, params, now)
        await uow.jobs.enqueue(send)
