"""The MyRequest view and its apply rule: pure, order-tolerant and idempotent.

Each event contributes a partial row (:func:`contribution`); :func:`apply` joins it
into the row field by field (:func:`merge`). Every field's join is commutative,
associative and idempotent, so the row after a set of events is the same whatever
order they arrive in and however often each one arrives:

- state (with the reason of the event that set it): the higher in
  ``requested < approved < inProgress < terminal`` wins, so nothing moves back and a
  terminal state stays. A failed request can still complete (an admin re-drove its
  job), and nothing leaves ``completed``, so ``completed`` beats ``failed``; otherwise
  the more conservative wins (``failed < completed < rejected < cancelled``), again
  whatever the order. While a re-driven job runs the row still says ``failed``: a
  join without event versions cannot tell that progress came after the failure.
  State comes only from the owning context (``model.events`` / ``target.events``):
  core's completions are claims that model or target may refuse, so they change
  nothing here.
- step, total steps, progress: the highest seen (a late or repeated step never lowers
  them); model's ``StateChanged(completed)`` carries progress 100. A step core reports
  after a cancel still counts: it is the furthest the job got, whatever the order.
- lmsStatus: ``None < failed < sent``.
- createdAt: the Requested/TargetRequested event's time, else the earliest seen.
- updatedAt: the latest time of an event that contributed.
- owner, name, modelRequestId: the same on every event of a request that has them.

A row first seen through core (progress before the owner's Requested) has no state
and no owner yet: it is kept but not served until an owner event arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from contracts import Event, core, model, target
from contracts.model import ModelState
from contracts.target import TargetState

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LIVE_STATES: dict[str, int] = {
    ModelState.REQUESTED: 0,  # a target's too (the same word)
    ModelState.APPROVED: 1,
    ModelState.IN_PROGRESS: 2,
}
TERMINAL = 3
# Two terminal states of one request: a re-driven failure may complete later.
TERMINAL_PRIORITY: dict[str, int] = {
    ModelState.FAILED: 0,  # model's and target's words for their end states
    ModelState.COMPLETED: 1,
    ModelState.REJECTED: 2,
    ModelState.CANCELED: 3,
    TargetState.CANCELED: 3,
    "targetCanceled": 3,
}
LMS_RANK = {None: 0, "failed": 1, "sent": 2}

# The events that contribute to a row; all others (core's completions, failures and
# job cancellations) change nothing, the owning context's events being authoritative.
CONTRIBUTING: tuple[type[Event], ...] = (
    model.ModelRequestEvent,
    target.TargetRequestEvent,
    core.ModelProgressed,
    core.LmsSent,
    core.LmsFailed,
)


@dataclass(frozen=True)
class MyRequest:
    id: str  # "model-1", "target-2": model and target ids overlap
    kind: str
    request_id: int
    created_at: datetime
    updated_at: datetime
    created_exact: bool = False  # created_at is the Requested event's time
    user_id: str | None = None
    name: str | None = None
    model_request_id: int | None = None
    state: str | None = None
    reason: str | None = None  # of the event that set the state
    refusal_reason: str | None = None  # a completion model refused (CompletionRefused)
    progress: int = 0
    step: int = 0
    total_steps: int = 0
    lms_status: str | None = None

    @property
    def visible(self) -> bool:
        """Served by the API: the owning context's events have arrived."""
        return self.state is not None

    @property
    def shown_reason(self) -> str | None:
        return self.reason if self.reason is not None else self.refusal_reason


def row_id(kind: str, request_id: int) -> str:
    return f"{kind}-{request_id}"


def event_time(timestamp_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=timestamp_ms)


def contribution(event: Event) -> MyRequest | None:
    """What one event says about its row, as a partial row; None if it says nothing."""
    at = event_time(event.timestamp)
    if isinstance(event, model.ModelRequestEvent):
        row = MyRequest(
            id=row_id("model", event.id),
            kind="model",
            request_id=event.id,
            created_at=at,
            updated_at=at,
            created_exact=isinstance(event, model.Requested),
            user_id=event.user_id,
            name=event.model_name,
        )
        if isinstance(event, model.CompletionRefused):
            return replace(row, refusal_reason=event.reason)
        row = replace(row, state=event.state, reason=getattr(event, "reason", None))
        if isinstance(event, model.StateChanged):
            row = replace(
                row,
                progress=_percent(event.progress),
                step=max(event.step, 0),
                total_steps=max(event.total_steps, 0),
            )
        return row
    if isinstance(event, target.TargetRequestEvent):
        return MyRequest(
            id=row_id("target", event.id),
            kind="target",
            request_id=event.id,
            created_at=at,
            updated_at=at,
            created_exact=isinstance(event, target.TargetRequested),
            user_id=event.user_id,
            name=event.type,
            model_request_id=event.model_request_id,
            state=event.state,
            reason=getattr(event, "reason", None),
            # Extraction reports no steps; a completed target is all done.
            progress=100 if event.state == TargetState.COMPLETED else 0,
        )
    if isinstance(event, CONTRIBUTING) and isinstance(event, core.CoreJobEvent):
        try:
            request_id = int(event.request_id)
        except ValueError:
            return None
        row = MyRequest(
            id=row_id(event.type, request_id),
            kind=event.type,
            request_id=request_id,
            created_at=at,
            updated_at=at,
        )
        if isinstance(event, core.ModelProgressed):
            step, total = max(event.step, 0), max(event.total_steps, 0)
            progress = _percent(step * 100 // total) if total else 0
            return replace(row, step=step, total_steps=total, progress=progress)
        return replace(row, lms_status="sent" if isinstance(event, core.LmsSent) else "failed")
    return None


def merge(a: MyRequest, b: MyRequest) -> MyRequest:
    """The join of two rows of one request (commutative, associative, idempotent)."""
    if a.id != b.id:
        raise ValueError(f"cannot merge rows {a.id} and {b.id}")
    state, reason = max((a.state, a.reason), (b.state, b.reason), key=_state_key)
    if a.created_exact != b.created_exact:
        created_exact, created_at = (True, a.created_at if a.created_exact else b.created_at)
    else:
        created_exact, created_at = a.created_exact, min(a.created_at, b.created_at)
    return MyRequest(
        id=a.id,
        kind=a.kind,
        request_id=a.request_id,
        created_at=created_at,
        updated_at=max(a.updated_at, b.updated_at),
        created_exact=created_exact,
        user_id=_either(a.user_id, b.user_id),
        name=_either(a.name, b.name),
        model_request_id=_either(a.model_request_id, b.model_request_id),
        state=state,
        reason=reason,
        refusal_reason=_either(a.refusal_reason, b.refusal_reason),
        progress=max(a.progress, b.progress),
        step=max(a.step, b.step),
        total_steps=max(a.total_steps, b.total_steps),
        lms_status=max(a.lms_status, b.lms_status, key=lambda s: (LMS_RANK.get(s, 0), s or "")),
    )


def apply(row: MyRequest | None, event: Event) -> MyRequest | None:
    """The row after ``event``: the same for any order and any repetition of events."""
    change = contribution(event)
    if change is None:
        return row
    return change if row is None else merge(row, change)


def _state_key(pair: tuple[str | None, str | None]) -> tuple[int, int, str, bool, str]:
    """A total order on (state, reason), so that max() is a join."""
    state, reason = pair
    if state is None:
        rank, priority = -1, 0
    elif state in LIVE_STATES:
        rank, priority = LIVE_STATES[state], 0
    else:
        rank, priority = TERMINAL, TERMINAL_PRIORITY.get(state, -1)
    return rank, priority, state or "", reason is not None, reason or ""


T = TypeVar("T", str, int)


def _either(a: T | None, b: T | None) -> T | None:
    """The value both sides agree on; if they ever differed, deterministically the larger."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _percent(value: int) -> int:
    return min(max(value, 0), 100)
