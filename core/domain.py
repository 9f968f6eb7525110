"""Job: a pure aggregate whose lifecycle is a transition table.

queued --claim--> running --step/renew--> running --complete--> completed
running --claim--> running                  (its lease ran out: another worker takes it over)
running --retry--> queued                   (an attempt failed; available again after a backoff)
running --fail---> failed                   (out of attempts, or a refusal that is final)
queued / running --cancel--> canceled       (its request was cancelled)
completed --compensate--> canceled          (model refused the completion: a cancel raced it)
failed --redrive--> queued                  (an admin re-drives it: a fresh round of attempts)

Events: a model job announces ModelProgressed per step and ModelCompleted/ModelFailed;
a target job TargetCompleted/TargetFailed; an lms job LmsSent/LmsFailed; a cancelled
job JobCanceled and never a completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from contracts import Event
from contracts import core as events
from servicekit.resilience import Backoff  # the kernel's one retry schedule, jittered
from servicekit.statemachine import TransitionTable


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"


class Action(StrEnum):
    CLAIM = "claim"
    RENEW = "renew"
    STEP = "step"
    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    CANCEL = "cancel"
    COMPENSATE = "compensate"
    REDRIVE = "redrive"


class Kind(StrEnum):
    MODEL = "model"  # training, for an approved model request
    TARGET = "target"  # extraction, for an approved target request
    LMS = "lms"  # the MIDAS bulk send that follows a completed extraction


LIFECYCLE: TransitionTable[State, Action] = TransitionTable(
    "job",
    {
        (State.QUEUED, Action.CLAIM): State.RUNNING,
        (State.RUNNING, Action.CLAIM): State.RUNNING,
        (State.RUNNING, Action.RENEW): State.RUNNING,
        (State.RUNNING, Action.STEP): State.RUNNING,
        (State.RUNNING, Action.COMPLETE): State.COMPLETED,
        (State.RUNNING, Action.RETRY): State.QUEUED,
        (State.RUNNING, Action.FAIL): State.FAILED,
        (State.QUEUED, Action.CANCEL): State.CANCELED,
        (State.RUNNING, Action.CANCEL): State.CANCELED,
        (State.COMPLETED, Action.COMPENSATE): State.CANCELED,
        (State.FAILED, Action.REDRIVE): State.QUEUED,
    },
)

FINISHED = frozenset({State.COMPLETED, State.CANCELED, State.FAILED})

_COMPLETED: dict[Kind, type[events.CoreJobEvent]] = {
    Kind.MODEL: events.ModelCompleted,
    Kind.TARGET: events.TargetCompleted,
    Kind.LMS: events.LmsSent,
}
_FAILED: dict[Kind, type[events.CoreJobEvent]] = {
    Kind.MODEL: events.ModelFailed,
    Kind.TARGET: events.TargetFailed,
    Kind.LMS: events.LmsFailed,
}


@dataclass(frozen=True)
class BatchRead:
    """The Vertica batch a training step read: reported with the step's progress."""

    number: int  # 1-based, within the training data
    offset: int
    rows: int
    total_rows: int
    next_offset: int  # where the next step reads (0: the next pass starts over)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Job:
    id: int
    kind: Kind
    request_id: str
    user_id: str
    name: str
    total_steps: int
    max_attempts: int
    state: State = State.QUEUED
    step: int = 0
    attempts: int = 0
    data_offset: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    available_at: datetime = field(default_factory=_now)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    reason: str | None = None
    last_error: str | None = None
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = field(default_factory=_now)
    traceparent: str | None = None  # the trace of whatever caused the job; its work joins it
    redrives: int = 0  # times an admin re-drove it after it failed
    events: list[Event] = field(default_factory=list, repr=False)

    @classmethod
    def new(
        cls,
        id: int,
        kind: Kind,
        request_id: str,
        user_id: str,
        name: str,
        total_steps: int,
        max_attempts: int,
        params: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Job:
        now = now or _now()
        return cls(
            id=id,
            kind=kind,
            request_id=request_id,
            user_id=user_id,
            name=name,
            total_steps=total_steps,
            max_attempts=max_attempts,
            params=params or {},
            available_at=now,
            created_at=now,
            updated_at=now,
        )

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def work_steps(self) -> int:
        """Steps run before the finishing action (an lms job is its finishing action)."""
        return 0 if self.kind == Kind.LMS else self.total_steps

    @property
    def event_type(self) -> Literal["model", "target"]:
        return "model" if self.kind == Kind.MODEL else "target"

    def claim(self, owner: str, now: datetime, lease_s: float) -> bool:
        """Take the job for one attempt; False if it ended instead (cancelled meanwhile, or
        no attempts left)."""
        if self.state == State.RUNNING and self.cancel_requested:
            # Its worker stopped before it saw the cancel: end it now, do not run it again.
            self.cancel(self.reason or "cancel requested", now)
            return False
        if self.state == State.RUNNING and self.attempts >= self.max_attempts:
            # Its worker stopped during the last allowed attempt: a job that keeps
            # killing its worker must not be retried forever.
            self._fail(f"worker lost during attempt {self.attempts} of {self.max_attempts}", now)
            return False
        self._move(Action.CLAIM, now)
        self.attempts += 1
        self.lease_owner = owner
        self.lease_expires_at = now + timedelta(seconds=lease_s)
        self.started_at = self.started_at or now
        return True

    def renew(self, now: datetime, lease_s: float) -> None:
        self._move(Action.RENEW, now)
        self.lease_expires_at = now + timedelta(seconds=lease_s)

    def advance(
        self,
        now: datetime,
        lease_s: float,
        data_offset: int | None = None,
        batch: BatchRead | None = None,
    ) -> None:
        """One step done: persist it, renew the lease, report progress (and the batch read)."""
        self._move(Action.STEP, now)
        self.step = min(self.step + 1, self.total_steps)
        if batch is not None:
            data_offset = batch.next_offset
        if data_offset is not None:
            self.data_offset = data_offset
        self.lease_expires_at = now + timedelta(seconds=lease_s)
        if self.kind == Kind.MODEL:
            read = {}
            if batch is not None:
                read = {
                    "batch": batch.number,
                    "batch_offset": batch.offset,
                    "batch_rows": batch.rows,
                    "total_rows": batch.total_rows,
                }
            self._announce(
                events.ModelProgressed, step=self.step, total_steps=self.total_steps, **read
            )

    def complete(self, now: datetime, check: events.Check | None = None, **result: Any) -> None:
        """Done; a model job says which compensation check allowed it (``check``)."""
        self._move(Action.COMPLETE, now)
        self.step = self.total_steps
        self.result = {**self.result, **result}
        self._end(now)
        extra: dict[str, Any] = {"check": check} if check is not None else {}
        if self.kind == Kind.LMS:
            extra["midas_send_id"] = result["midas_send_id"]
        self._announce(_COMPLETED[self.kind], **extra)

    def fail_attempt(
        self, error: str, now: datetime, backoff: Backoff, *, final: bool = False
    ) -> float | None:
        """This attempt failed: back to the queue after a backoff (returns the delay), or
        failed for good when the attempts are used up or the failure is ``final``."""
        self.last_error = error
        if final:
            self._fail(error, now)
            return None
        if self.attempts >= self.max_attempts:
            self._fail(f"{error} (gave up after {self.attempts} attempts)", now)
            return None
        delay = backoff.delay(self.attempts)
        self._move(Action.RETRY, now)
        self.available_at = now + timedelta(seconds=delay)
        self.lease_owner = None
        self.lease_expires_at = None
        return delay

    def request_cancel(self, reason: str, now: datetime) -> str:
        """Its request was cancelled: a queued job ends now, a running one at its next step.
        Returns what happened: ``canceled``, ``cancel_requested`` or ``ignored``."""
        if self.state == State.QUEUED:
            self.cancel(reason, now)
            return "canceled"
        if self.state == State.RUNNING:
            self.cancel_requested = True
            self.reason = reason
            self.updated_at = now
            return "cancel_requested"
        return "ignored"

    def cancel(self, reason: str, now: datetime, check: events.Check | None = None) -> None:
        """Ended without completing; ``check``: the compensation check found it gone."""
        self._move(Action.CANCEL, now)
        self._end(now)
        self.reason = reason
        self._announce(events.JobCanceled, reason=reason, check=check)

    def compensate(self, reason: str, now: datetime) -> bool:
        """Model refused this job's completion: record the job as cancelled after all."""
        if not LIFECYCLE.allows(self.state, Action.COMPENSATE):
            return False
        self._move(Action.COMPENSATE, now)
        self.reason = reason
        self.updated_at = now
        self._announce(events.JobCanceled, reason=reason)
        return True

    def redrive(self, now: datetime, attempts: int) -> None:
        """An admin tries a failed job again: queued now, with ``attempts`` more attempts,
        resuming from the step it reached (its data offset kept). Raises
        ``IllegalTransition`` unless it is failed, so a second re-drive is refused."""
        self._move(Action.REDRIVE, now)
        self.redrives += 1
        self.max_attempts = self.attempts + attempts
        self.available_at = now
        self.finished_at = None
        self.reason = None
        self.lease_owner = None
        self.lease_expires_at = None

    def pull_events(self) -> list[Event]:
        pulled, self.events = self.events, []
        return pulled

    def _fail(self, reason: str, now: datetime) -> None:
        self._move(Action.FAIL, now)
        self._end(now)
        self.reason = reason
        self._announce(_FAILED[self.kind], reason=reason)

    def _end(self, now: datetime) -> None:
        self.finished_at = now
        self.lease_owner = None
        self.lease_expires_at = None

    def _move(self, action: Action, now: datetime) -> State:
        previous = self.state
        self.state = LIFECYCLE.next(self.id, self.state, action)
        self.updated_at = now
        return previous

    def _announce(self, event_type: type[events.CoreJobEvent], **extra: Any) -> None:
        self.events.append(
            event_type(id=self.id, request_id=self.request_id, type=self.event_type, **extra)
        )
