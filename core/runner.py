"""Running one claimed job to its end, one lease-conditioned transaction at a time.

Every write a worker makes to a job (renew, step, end) locks the row and first checks
that this claim still holds the lease: a worker whose lease ran out and was taken over
stops at its next write, so two workers can never both complete a job. Every write
also looks at ``cancel_requested``: a cancelled job stops there, announcing JobCanceled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import structlog
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from core import metrics
from core.domain import BatchRead, Job, State
from core.jobs import JobTypes
from core.jobs.base import Cancel, Complete, Fail, Outcome
from core.repository import CoreUnitOfWork
from servicekit.resilience import Backoff
from servicekit.sql import ConditionFailed
from servicekit.tracing import span_from

log = structlog.get_logger(__name__)

Change = Callable[[Job, CoreUnitOfWork, datetime], Awaitable[None]]

# A lease this claim wrote less than this long ago is not renewed again before the next
# step or check: every step's write renews the lease already, so a renewal right after
# it (a transaction per step) bought nothing.
FRESH_LEASE_S = 0.25


class LeaseLost(Exception):
    """Another worker took the job over (or it ended meanwhile): stop without writing."""


class JobEnded(Exception):
    """The job ended at a write (its request was cancelled): nothing more to do."""


def _now() -> datetime:
    return datetime.now(UTC)


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class JobRunner:
    def __init__(
        self,
        uow_factory: Callable[[], CoreUnitOfWork],
        types: JobTypes,
        *,
        lease_s: float,
        backoff: Backoff,
        lms_max_attempts: int,
        tracer: Tracer,
    ) -> None:
        self.uow_factory = uow_factory
        self.types = types
        self.lease_s = lease_s
        self.backoff = backoff
        self.follow_up_attempts = lms_max_attempts  # the only follow-up job is an LMS send
        self.tracer = tracer

    async def run(self, job: Job) -> None:
        """Run this claim of ``job``: one span in the trace of whatever caused the job."""
        attributes = {
            "nocode.job.id": job.id,
            "nocode.job.kind": job.kind.value,
            "nocode.request.id": job.request_id,
            "nocode.job.attempt": job.attempts,
        }
        with (
            span_from(
                self.tracer, f"{job.kind.value} job", job.traceparent, attributes=attributes
            ) as span,
            structlog.contextvars.bound_contextvars(job_id=job.id),
        ):
            try:
                await self._run(job)
            except JobEnded:
                span.set_attribute("nocode.job.state", "ended")
            except LeaseLost as exc:
                span.set_status(Status(StatusCode.ERROR, "lease lost"))
                log.warning(
                    "job lease lost, stopping",
                    job_id=job.id,
                    request_id=job.request_id,
                    why=str(exc),
                )

    async def _run(self, job: Job) -> None:
        claim = Claim(self.uow_factory, job, self.lease_s)
        job_type = self.types[job.kind]
        try:
            while claim.job.step < claim.job.work_steps:
                with self.tracer.start_as_current_span(
                    f"{job.kind.value} step",
                    kind=SpanKind.INTERNAL,
                    set_status_on_exception=False,  # JobEnded (a cancel) is no error
                ) as span:
                    span.set_attribute("nocode.job.step", claim.job.step + 1)
                    await claim.renew_if_due()
                    read = await job_type.step(claim.job)
                    job = await claim.write(self._advance(read))
                log.debug(  # a line per step: debug (the job's claim and end are info)
                    "job step",
                    job_id=job.id,
                    request_id=job.request_id,
                    step=job.step,
                    total_steps=job.total_steps,
                )
            outcome = await job_type.finish(claim.job, _RenewWhenDue(claim))
        except (JobEnded, LeaseLost, asyncio.CancelledError):
            raise
        except Exception as exc:
            outcome = Fail(describe(exc))
        await claim.write(self._apply(outcome), final=True)

    def _advance(self, read: BatchRead | None) -> Change:
        async def advance(job: Job, uow: CoreUnitOfWork, now: datetime) -> None:
            job.advance(now, self.lease_s, batch=read)

        return advance

    def _apply(self, outcome: Outcome) -> Change:
        async def apply(job: Job, uow: CoreUnitOfWork, now: datetime) -> None:
            match outcome:
                case Complete(result, check):
                    job.complete(now, check, **result)
                    await self.types[job.kind].follow_up(job, uow, now, self.follow_up_attempts)
                case Cancel(reason, check):
                    job.cancel(reason, now, check)
                case Fail(error, final):
                    delay = job.fail_attempt(error, now, self.backoff, final=final)
                    if delay is not None:
                        metrics.JOBS.labels(job.kind.value, "retried").inc()
                        log.warning(
                            "job attempt failed, retrying",
                            job_id=job.id,
                            request_id=job.request_id,
                            attempt=job.attempts,
                            max_attempts=job.max_attempts,
                            retry_in_s=delay,
                            error=error,
                        )

        return apply


class Claim:
    """A runner's claim of one job (core.jobs.base.Lease), and the job as last written.

    Every write locks the job, checks this claim still holds its lease, applies the
    change (or the pending cancel) and commits."""

    def __init__(self, uow_factory: Callable[[], CoreUnitOfWork], job: Job, lease_s: float) -> None:
        self.uow_factory = uow_factory
        self.job = job
        self.owner = job.lease_owner
        self.lease_s = lease_s
        self.written_at = time.monotonic()  # the claim just wrote the lease

    async def renew(self) -> None:
        await self.write(self._renew)

    async def renew_if_due(self) -> None:
        """Renew, unless this claim wrote the lease (claim, step or renewal) a moment ago:
        that lease is as good as a renewed one, and the next write checks the claim and a
        pending cancel all the same (a cancel found there ends the job at that write)."""
        if time.monotonic() - self.written_at >= FRESH_LEASE_S:
            await self.renew()

    async def _renew(self, job: Job, uow: CoreUnitOfWork, now: datetime) -> None:
        job.renew(now, self.lease_s)

    async def write(self, change: Change, *, final: bool = False) -> Job:
        """Raises LeaseLost when the claim lost its lease, JobEnded when the job ended at
        this write (cancelled) unless it is the ``final`` one.

        A step or a renewal (a change to the job alone) is first tried as one conditional
        UPDATE of the job as this claim last wrote it, sent with its events as one
        statement; only when something else wrote the row since (a cancel asked, a
        takeover) is it locked and looked at, as below."""
        async with self.uow_factory() as uow:
            if not final and (written := await self._write_unchanged(uow, change)):
                return written
            current = await uow.jobs.get(self.job.id)
            held_here = current is not None and current.lease_owner == self.owner
            if current is None or current.state != State.RUNNING or not held_here:
                held = f"{current.state.value} ({current.lease_owner})" if current else "gone"
                raise LeaseLost(f"job {self.job.id} is {held}")
            now = _now()
            if current.cancel_requested:
                current.cancel(current.reason or "cancel requested", now)
            else:
                await change(current, uow, now)
            await uow.jobs.save(current)
            await uow.commit()
        self.written_at = time.monotonic()
        self.job = current
        if current.finished:
            record_end(current)
            if not final:
                raise JobEnded
        return current

    async def _write_unchanged(self, uow: CoreUnitOfWork, change: Change) -> Job | None:
        job = replace(self.job, events=[])
        await change(job, uow, _now())
        await uow.jobs.save_unchanged(job, self.owner, self.job.updated_at)
        try:
            await uow.commit()  # the job and its events: one statement, its own transaction
        except ConditionFailed:
            return None  # nothing stored; its events were dropped with it
        self.written_at = time.monotonic()
        self.job = job
        return job


class _RenewWhenDue:
    """The lease a job type's finish gets: renewing one written a moment ago is skipped."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim

    async def renew(self) -> None:
        await self.claim.renew_if_due()


def record_end(job: Job) -> None:
    """Log and count a job that just ended."""
    outcome = job.state.value
    metrics.JOBS.labels(job.kind.value, outcome).inc()
    if job.state == State.CANCELED:
        metrics.SAGA_COMPENSATIONS.labels("core", "job_canceled").inc()
    if job.started_at and job.finished_at:
        metrics.JOB_DURATION.labels(job.kind.value, outcome).observe(
            (job.finished_at - job.started_at).total_seconds()
        )
    level = log.warning if job.state == State.FAILED else log.info
    level(
        f"job {outcome}",
        job_id=job.id,
        request_id=job.request_id,
        kind=job.kind.value,
        step=job.step,
        total_steps=job.total_steps,
        attempts=job.attempts,
        reason=job.reason,
    )
