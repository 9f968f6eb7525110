"""What the chat is told: one message per state change of a model or target request.

Pure functions from events to :class:`Notice` (or ``None`` when the event is no
state change: a training step, a refused completion, a cancelled job).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from contracts import Event, core, model, target

RequestKind = Literal["model", "target"]

NEW = "new"  # the "old state" of a request that did not exist before

NAME_MAX = 120  # a model name, a target type, a user id, as the chat shows them
REASON_MAX = 300  # a reason, as the chat shows it

# Slack's markup in plain text: `&`, `<` and `>` are escaped as entities (so `<!here>`,
# `<@U123>` and `<http://…|label>` cannot be formed); `@channel`-style mentions and the
# *bold* _italic_ ~strike~ `code` markers have no escape, so they become look-alikes.
_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_LOOKALIKES = str.maketrans({"*": "\u2217", "_": "\u02cd", "~": "\u02dc", "`": "\u02cb"})
_MENTION = re.compile(r"(?<!\w)@")  # @channel, @here, @someone; not the one in a@b.com
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


@dataclass(frozen=True)
class Notice:
    user_id: str | None
    request_kind: RequestKind
    request_id: int
    text: str


@dataclass(frozen=True)
class TargetInfo:
    """What notice remembers of a target request to say whose it is in core's events."""

    id: int
    user_id: str
    type: str
    model_request_id: int


def target_info(event: target.TargetRequestEvent) -> TargetInfo:
    return TargetInfo(event.id, event.user_id, event.type, event.model_request_id)


def notice_for(event: Event, known_target: TargetInfo | None = None) -> Notice | None:
    """The chat message ``event`` calls for; ``known_target`` is used for core's LMS events."""
    if isinstance(event, model.ModelRequestEvent):
        return _model_notice(event)
    if isinstance(event, target.TargetRequestEvent):
        return _target_notice(event)
    if isinstance(event, core.LmsSent | core.LmsFailed):
        return _lms_notice(event, known_target)
    return None


def _model_notice(event: model.ModelRequestEvent) -> Notice | None:
    if isinstance(event, model.Requested):
        previous, reason = NEW, None
    elif isinstance(event, model.Approved | model.Rejected | model.RequestCanceled):
        previous, reason = event.previous_state, getattr(event, "reason", None)
    elif isinstance(event, model.StateChanged) and event.state != event.previous_state:
        previous, reason = event.previous_state, event.reason
    else:  # a training step, a refused completion: no state change
        return None
    subject = f'Model request #{event.id} "{said(event.model_name)}" by {said(event.user_id)}'
    return Notice(event.user_id, "model", event.id, _change(subject, previous, event.state, reason))


def _target_notice(event: target.TargetRequestEvent) -> Notice | None:
    if isinstance(event, target.TargetRequested):
        previous, reason = NEW, None
    elif isinstance(
        event,
        target.TargetApproved
        | target.TargetRejected
        | target.TargetCanceled
        | target.TargetStateChanged,
    ):
        if event.state == event.previous_state:
            return None
        previous, reason = event.previous_state, getattr(event, "reason", None)
    else:
        return None
    subject = _target_subject(event.id, target_info(event))
    return Notice(
        event.user_id, "target", event.id, _change(subject, previous, event.state, reason)
    )


def _lms_notice(event: core.LmsSent | core.LmsFailed, known: TargetInfo | None) -> Notice:
    target_id = int(event.request_id)
    subject = _target_subject(target_id, known)
    if isinstance(event, core.LmsSent):
        send_id = said(event.midas_send_id)
        text = f"{subject}: LMS bulk send accepted by MIDAS (send id {send_id})"
    else:
        text = f"{subject}: LMS bulk send failed — {said(event.reason, REASON_MAX)}"
    return Notice(known.user_id if known else None, "target", target_id, text)


def _target_subject(id: int, info: TargetInfo | None) -> str:
    if info is None:  # core's event overtook every target event: say what is known
        return f"Target request #{id}"
    kind, who = said(info.type), said(info.user_id)
    return f"Target request #{id} ({kind}, model #{info.model_request_id}) by {who}"


def _change(subject: str, previous: str, state: str, reason: str | None) -> str:
    text = f"{subject}: {previous} → {state}"
    return f"{text} — {said(reason, REASON_MAX)}" if reason else text


def said(text: object, limit: int = NAME_MAX) -> str:
    """User-supplied ``text`` as the chat may show it: one line (line breaks, control and
    direction characters become a space), at most ``limit`` characters, no markup."""
    line = _BREAKS.sub(" ", str(text)).strip()
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return _MENTION.sub("\uff20", line.translate(_ENTITIES).translate(_LOOKALIKES))
