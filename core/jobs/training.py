"""Training, for an approved model request: each step reads a Vertica batch and trains
on it (simulated), reporting ModelProgressed; before ModelCompleted goes out, the
cancellation check asks model whether the request is still wanted. A completed
training writes its model card (core.artifact) in the completing transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Protocol

from contracts import core as events
from core import metrics
from core.adapters.vertica import Batch
from core.artifact import Artifacts
from core.jobs.base import BatchRead, Cancel, Complete, JobEvents, Kind, Lease, Outcome, Pace
from core.jobs.cancellation_check import CancellationCheck

if TYPE_CHECKING:
    from core.domain import Job
    from core.repository import CoreUnitOfWork


class TrainingData(Protocol):
    async def training_batch(self, model_request_id: str, offset: int, limit: int) -> Batch: ...


class Training:
    kind: ClassVar[Kind] = Kind.MODEL
    events: ClassVar[JobEvents] = JobEvents(
        "model", events.ModelCompleted, events.ModelFailed, progressed=events.ModelProgressed
    )
    runs_steps: ClassVar[bool] = True

    def __init__(
        self,
        vertica: TrainingData,
        check: CancellationCheck,
        pace: Pace,
        batch_size: int,
        artifacts: Artifacts | None = None,  # a completed model's card
    ) -> None:
        self.vertica = vertica
        self.check = check
        self.pace = pace
        self.batch_size = batch_size
        self.artifacts = artifacts

    async def step(self, job: Job) -> BatchRead:
        offset = job.data_offset
        batch = await self.vertica.training_batch(job.request_id, offset, self.batch_size)
        metrics.TRAINING_ROWS.inc(len(batch.rows))
        await self.pace.step()  # training on the batch (simulated)
        return BatchRead(
            number=offset // self.batch_size + 1,
            offset=offset,
            rows=len(batch.rows),
            total_rows=batch.total,
            # At the end of the data the next step starts the next pass (epoch).
            next_offset=batch.next_offset if batch.next_offset is not None else 0,
        )

    async def finish(self, job: Job, lease: Lease) -> Outcome:
        verdict = await self.check.verdict(job.request_id, lease.renew, job.id)
        if verdict.complete:
            return Complete(check=verdict.check)
        return Cancel(verdict.reason or "cancelled", verdict.check)

    async def follow_up(self, job: Job, uow: CoreUnitOfWork, now: datetime, attempts: int) -> None:
        if self.artifacts is not None:
            await self.artifacts.write(job, uow, now)
