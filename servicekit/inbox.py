"""The inbox: which events a consumer applied, claimed in the transaction of their effect.

A row per (event id, consumer group); claiming an id already there claims nothing, so a
redelivered or re-driven event changes nothing the second time.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.envelope import Envelope
from servicekit.tables import inbox_table

INBOX = inbox_table(MetaData())

_CLAIM = insert(INBOX).on_conflict_do_nothing().returning(INBOX.c.event_id)  # built once


async def claim(session: AsyncSession, group_id: str, topic: str, envelope: Envelope) -> bool:
    """Record ``envelope``'s id in the inbox of ``group_id``, in the caller's transaction;
    False when that consumer applied it already."""
    claimed = await session.execute(
        _CLAIM,
        {"event_id": envelope.id, "consumer": group_id, "topic": topic, "ce_type": envelope.type},
    )
    return claimed.first() is not None


async def claim_many(
    session: AsyncSession, group_id: str, events: list[tuple[str, Envelope]]
) -> set[str]:
    """:func:`claim` for many ``(topic, envelope)`` in one statement: the ids claimed now
    (an id given twice is claimed once)."""
    claimed = await session.execute(
        _CLAIM,
        [
            {"event_id": env.id, "consumer": group_id, "topic": topic, "ce_type": env.type}
            for topic, env in events
        ],
    )
    return {row.event_id for row in claimed}
