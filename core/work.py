"""What each kind of job does: its steps, and how it finishes.

Nothing here writes to the database: a step returns what to persist, and ``finish``
returns an outcome that the runner applies in one transaction, conditioned on the
lease, together with the events it raises.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from contracts.core import Check
from core import metrics
from core.adapters.midas import MidasRefused, MidasRejected
from core.adapters.vertica import Batch
from core.compensation import CompensationCheck
from core.domain import BatchRead, Job, Kind

log = structlog.get_logger(__name__)


class TrainingData(Protocol):
    async def training_batch(self, model_request_id: str, offset: int, limit: int) -> Batch: ...


class LmsSender(Protocol):
    async def send_lms(
        self, idempotency_key: str, target_id: int, user_id: str, audience_size: int, message: str
    ) -> str: ...


@dataclass(frozen=True)
class Complete:
    result: dict[str, Any] = field(default_factory=dict)
    check: Check | None = None  # the compensation check that allowed it (a model job)


@dataclass(frozen=True)
class Cancel:
    reason: str
    check: Check | None = None  # the compensation check that found the request gone


@dataclass(frozen=True)
class Fail:
    error: str
    final: bool = False  # no retry would help


Outcome = Complete | Cancel | Fail


def audience_size(target_id: str) -> int:
    """The extracted audience (simulated): a stable number per target."""
    return 1_000 + zlib.crc32(f"target-{target_id}".encode()) % 9_000


def lms_job(target: Job, id: int, max_attempts: int, now: datetime) -> Job:
    """The MIDAS send that follows a completed extraction (one per target)."""
    size = int(target.result.get("audienceSize", audience_size(target.request_id)))
    message = f"[nocode] {target.name}: a message for the {size} people of target {target.id}"
    return Job.new(
        id,
        Kind.LMS,
        target.request_id,
        target.user_id,
        target.name,
        total_steps=1,
        max_attempts=max_attempts,
        params={
            "targetId": int(target.request_id),
            "userId": target.user_id,
            "audienceSize": size,
            "message": message,
        },
        now=now,
    )


class Work:
    def __init__(
        self,
        *,
        vertica: TrainingData,
        midas: LmsSender,
        check: CompensationCheck,
        batch_size: int,
        step_duration_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.vertica = vertica
        self.midas = midas
        self.check = check
        self.batch_size = batch_size
        self.step_duration_s = step_duration_s
        self.sleep = sleep

    async def step(self, job: Job) -> BatchRead | None:
        """Run the job's next step; returns the batch it read (persisted and reported with
        it), if any. Raises when the step failed (the attempt fails with it)."""
        if job.kind == Kind.MODEL:
            return await self._train(job)
        await self.sleep(self.step_duration_s)  # extraction (simulated)
        return None

    async def _train(self, job: Job) -> BatchRead:
        offset = job.data_offset
        batch = await self.vertica.training_batch(job.request_id, offset, self.batch_size)
        metrics.TRAINING_ROWS.inc(len(batch.rows))
        await self.sleep(self.step_duration_s)  # training on the batch (simulated)
        return BatchRead(
            number=offset // self.batch_size + 1,
            offset=offset,
            rows=len(batch.rows),
            total_rows=batch.total,
            # At the end of the data the next step starts the next pass (epoch).
            next_offset=batch.next_offset if batch.next_offset is not None else 0,
        )

    async def finish(self, job: Job, before_try: Callable[[], Awaitable[None]]) -> Outcome:
        if job.kind == Kind.MODEL:
            verdict = await self.check.verdict(job.request_id, before_try, job.id)
            if verdict.complete:
                return Complete(check=verdict.check)
            return Cancel(verdict.reason or "cancelled", verdict.check)
        if job.kind == Kind.TARGET:
            return Complete({"audienceSize": audience_size(job.request_id)})
        return await self._send_lms(job)

    async def _send_lms(self, job: Job) -> Outcome:
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
