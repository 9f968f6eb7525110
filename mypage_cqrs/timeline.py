"""Each request's timeline, and the rule that turns one event into its entries: pure.

An event says what happened to one request; :func:`entries` turns it into zero, one or
two timeline entries (a training step is the Vertica batch it read, then the step).
Entries are keyed by ``(event id, part)`` and never change once written, so a
timeline is the *set* of its events' entries: the same whatever order the events
arrive in and however often each arrives, which is why the live consumer and a
replay build identical timelines. :func:`ordered` sorts a request's entries by the
events' own times (ties broken by a fixed rank, then the key), not by arrival.

Who did it (``actor``): the token subject the owning service recorded on the event
(approve, reject, cancel), the requester for a request; ``core`` for what core's work
drove (steps, batches, its check, completions, failures, the LMS send), ``model`` when
model refused a completion, ``target`` when target cancelled a target whose model will
never complete (compensation). Events written before the actor was recorded say None.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from contracts import Event, core, model, target
from mypage_cqrs.view import event_time, row_id

Kind = Literal["state", "progress", "batch", "check", "job", "lms"]
KINDS: tuple[Kind, ...] = ("state", "progress", "batch", "check", "job", "lms")

CORE = "core"
MODEL = "model"

# Ties within one millisecond: a step's batch before its progress before the check that
# follows the last step; what core did before what the owning context made of it.
_TIE_RANK: dict[str, int] = {"batch": 0, "progress": 1, "check": 2, "job": 3, "state": 4, "lms": 5}

# The events that leave entries (every event of the three topics does, today).
RECORDED: tuple[type[Event], ...] = (
    model.ModelRequestEvent,
    target.TargetRequestEvent,
    core.CoreJobEvent,
)


@dataclass(frozen=True)
class Entry:
    request: str  # the MyRequest row id: "model-1", "target-2"
    event_id: str
    part: int  # 0; 1 for an event's second entry (a step after its batch)
    at: datetime
    kind: Kind
    event_type: str
    state: str | None = None
    actor: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return self.event_id, self.part


def entries(event: Event) -> list[Entry]:
    """What ``event`` adds to its request's timeline (nothing for a repeated state)."""
    if isinstance(event, model.ModelRequestEvent):
        return _owner_entries(event, row_id("model", event.id), actor_default=event.user_id)
    if isinstance(event, target.TargetRequestEvent):
        return _owner_entries(event, row_id("target", event.id), actor_default=event.user_id)
    if isinstance(event, core.CoreJobEvent):
        return _core_entries(event)
    return []


def ordered(found: Iterable[Entry]) -> list[Entry]:
    """A request's entries in the order they happened."""
    return sorted(found, key=lambda e: (e.at, _TIE_RANK.get(e.kind, 9), e.part, e.event_id))


def _entry(event: Event, request: str, kind: Kind, part: int = 0, **values: Any) -> Entry:
    return Entry(
        request=request,
        event_id=event.event_id,
        part=part,
        at=event_time(event.timestamp),
        kind=kind,
        event_type=event.event_type(),
        **values,
    )


def _owner_entries(
    event: model.ModelRequestEvent | target.TargetRequestEvent, request: str, actor_default: str
) -> list[Entry]:
    reason = getattr(event, "reason", None)
    if isinstance(event, model.CompletionRefused):
        detail = {"jobId": event.job_id, "outcome": "completionRefused"}
        return [
            _entry(
                event,
                request,
                "check",
                state=event.state,
                actor=MODEL,
                reason=reason,
                detail=detail,
            )
        ]
    if isinstance(event, model.Requested | target.TargetRequested):
        first: dict[str, Any] = {}
        if isinstance(event, target.TargetRequested):
            first = {"modelRequestId": event.model_request_id}
        return [
            _entry(event, request, "state", state=event.state, actor=actor_default, detail=first)
        ]
    previous = getattr(event, "previous_state", None)
    detail: dict[str, Any] = {"previousState": previous}
    if isinstance(event, model.StateChanged | target.TargetStateChanged):
        if event.state == previous:
            return []  # a training step: core's ModelProgressed is its entry
        actor: str | None = CORE
        if isinstance(event, model.StateChanged):
            detail |= {
                "step": event.step,
                "totalSteps": event.total_steps,
                "progress": event.progress,
            }
    else:
        actor = getattr(event, "actor", None)
    return [
        _entry(
            event, request, "state", state=event.state, actor=actor, reason=reason, detail=detail
        )
    ]


def _core_entries(event: core.CoreJobEvent) -> list[Entry]:
    try:
        request = row_id(event.type, int(event.request_id))
    except ValueError:
        return []
    job = {"jobId": event.id}
    if isinstance(event, core.ModelProgressed):
        found = []
        if event.batch is not None:
            batch = {
                "batch": event.batch,
                "offset": event.batch_offset,
                "rows": event.batch_rows,
                "totalRows": event.total_rows,
            }
            found.append(_entry(event, request, "batch", actor=CORE, detail=job | batch))
        total = max(event.total_steps, 0)
        progress = min(max(event.step, 0) * 100 // total, 100) if total else 0
        step = {"step": event.step, "totalSteps": event.total_steps, "progress": progress}
        found.append(
            _entry(event, request, "progress", 1, state=event.state, actor=CORE, detail=job | step)
        )
        return found
    reason = getattr(event, "reason", None)
    if isinstance(event, core.ModelCompleted | core.JobCanceled):
        check = getattr(event, "check", None)
        if check is not None or isinstance(event, core.ModelCompleted):
            # A model's completion always follows a passed check (older events do not say so).
            seen = check.model_dump(by_alias=True) if check else {"outcome": "complete"}
            detail = job | seen
            return [
                _entry(
                    event,
                    request,
                    "check",
                    state=event.state,
                    actor=CORE,
                    reason=reason,
                    detail=detail,
                )
            ]
    if isinstance(event, core.LmsSent | core.LmsFailed):
        lms = {"midasSendId": event.midas_send_id} if isinstance(event, core.LmsSent) else {}
        state = "sent" if isinstance(event, core.LmsSent) else "failed"
        return [
            _entry(event, request, "lms", state=state, actor=CORE, reason=reason, detail=job | lms)
        ]
    # The job's own end: stopped (cancelled at a step), failed, or an extraction done.
    return [_entry(event, request, "job", state=event.state, actor=CORE, reason=reason, detail=job)]
