"""A notification's lifecycle, as a pure transition table.

pending --send------> sent
pending --retry-----> pending   (the chat is down or said no: tried again after a backoff)
pending --give_up---> failed    (the chat rejected it on every allowed attempt)
failed  --redrive---> pending   (an admin asks for it to be tried again)

Only a rejection (a 4xx the chat keeps answering) ends in ``failed``: a chat that is
down (unreachable, timing out, 5xx, 429) is retried for as long as it takes.
"""

from __future__ import annotations

from enum import StrEnum

from servicekit.statemachine import TransitionTable


class Status(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Action(StrEnum):
    SEND = "send"
    RETRY = "retry"
    GIVE_UP = "give_up"
    REDRIVE = "redrive"


LIFECYCLE: TransitionTable[Status, Action] = TransitionTable(
    "notification",
    {
        (Status.PENDING, Action.SEND): Status.SENT,
        (Status.PENDING, Action.RETRY): Status.PENDING,
        (Status.PENDING, Action.GIVE_UP): Status.FAILED,
        (Status.FAILED, Action.REDRIVE): Status.PENDING,
    },
)
