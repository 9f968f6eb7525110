"""What every job type is: the protocol core's aggregate and runner speak to.

A job type says what it announces (its events), whether it runs steps before it
finishes, what one step does, how it finishes, and what its completion brings about
in the completing transaction (its follow-up job, or an artifact). Types are
registered once, in ``core.jobs``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from contracts.core import Check, CoreJobEvent

if TYPE_CHECKING:
    from datetime import datetime

    from core.domain import Job
    from core.repository import CoreUnitOfWork


class Kind(StrEnum):
    MODEL = "model"  # training, for an approved model request
    TARGET = "target"  # extraction, for an approved target request
    LMS = "lms"  # the MIDAS bulk send that follows a completed extraction


@dataclass(frozen=True)
class Pace:
    """How long a simulated step takes, and how to wait it out (tests: no waiting)."""

    step_duration_s: float
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def step(self) -> None:
        await self.sleep(self.step_duration_s)


@dataclass(frozen=True)
class BatchRead:
    """The Vertica batch a training step read: reported with the step's progress."""

    number: int  # 1-based, within the training data
    offset: int
    rows: int
    total_rows: int
    next_offset: int  # where the next step reads (0: the next pass starts over)

    def reported(self) -> dict[str, int]:
        """Its fields on the step's progress event."""
        return {
            "batch": self.number,
            "batch_offset": self.offset,
            "batch_rows": self.rows,
            "total_rows": self.total_rows,
        }


@dataclass(frozen=True)
class JobEvents:
    """What a job of one type announces; ``progressed`` None: its steps report nothing."""

    subject: Literal["model", "target"]  # the request its events speak of
    completed: type[CoreJobEvent]
    failed: type[CoreJobEvent]
    progressed: type[CoreJobEvent] | None = None
    completion_fields: tuple[str, ...] = ()  # of its result, announced with the completion


@dataclass(frozen=True)
class Complete:
    result: dict[str, Any] = field(default_factory=dict)
    check: Check | None = None  # the cancellation check that allowed it (a model job)


@dataclass(frozen=True)
class Cancel:
    reason: str
    check: Check | None = None  # the cancellation check that found the request gone


@dataclass(frozen=True)
class Fail:
    error: str
    final: bool = False  # no retry would help


Outcome = Complete | Cancel | Fail


class Lease(Protocol):
    """The running claim of a job: ``renew`` extends it, and raises when the job was
    cancelled or taken over meanwhile (the work stops there)."""

    async def renew(self) -> None: ...


class JobType(Protocol):
    kind: ClassVar[Kind]
    events: ClassVar[JobEvents]
    runs_steps: ClassVar[bool]  # False: the finishing action is all it does

    async def step(self, job: Job) -> BatchRead | None:
        """Run the job's next step; returns the batch it read, if any. Raises when the
        step failed (the attempt fails with it)."""
        ...

    async def finish(self, job: Job, lease: Lease) -> Outcome: ...

    async def follow_up(self, job: Job, uow: CoreUnitOfWork, now: datetime, attempts: int) -> None:
        """What its completion brings about, in the completing transaction; a follow-up
        job gets ``attempts`` attempts."""
        ...
