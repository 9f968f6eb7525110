"""The inbox: which events a consumer applied, claimed in the transaction of their effect.

A row per (event id, consumer group); claiming an id already there claims nothing, so a
redelivered or re-driven event changes nothing the second time.

Claimed first (:func:`claim_many`, the ids claimed now), or at the commit
(:func:`claim_all`): the events are applied as new ones, and their inbox rows are the
condition of the commit's statement (``servicekit.sql.Sql.defer_condition``), which
stores nothing when any of them was applied before.
"""

from __future__ import annotations

from sqlalchemy import MetaData, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, insert

from servicekit.envelope import Envelope
from servicekit.sql import Sql, Statement
from servicekit.tables import inbox_table

INBOX = inbox_table(MetaData())

_ROWS = (
    func.unnest(
        bindparam("event_ids", type_=ARRAY(String)),
        bindparam("topics", type_=ARRAY(String)),
        bindparam("ce_types", type_=ARRAY(String)),
    )
    .table_valued("event_id", "topic", "ce_type")
    .render_derived(name="claimed")
)
_INSERT = (
    insert(INBOX)
    .from_select(
        ["event_id", "consumer", "topic", "ce_type"],
        select(
            _ROWS.c.event_id, bindparam("consumer", type_=String), _ROWS.c.topic, _ROWS.c.ce_type
        ),
    )
    .on_conflict_do_nothing()
)
_CLAIM = Statement(_INSERT.returning(INBOX.c.event_id))
"""One statement for a batch of any size (one row per event given)."""
_CLAIM_ALL = Statement(_INSERT)


_APPLIED = Statement(
    select(INBOX.c.event_id).where(
        INBOX.c.event_id == bindparam("event_id"), INBOX.c.consumer == bindparam("consumer")
    )
)


async def applied(sql: Sql, group_id: str, envelope: Envelope) -> bool:
    """Whether ``group_id`` applied ``envelope``'s event already."""
    found = await sql.fetchval(_APPLIED, {"event_id": envelope.id, "consumer": group_id})
    return found is not None


async def claim(sql: Sql, group_id: str, topic: str, envelope: Envelope) -> bool:
    """Record ``envelope``'s id in the inbox of ``group_id``, in the caller's transaction;
    False when that consumer applied it already."""
    return bool(await claim_many(sql, group_id, [(topic, envelope)]))


async def claim_many(sql: Sql, group_id: str, events: list[tuple[str, Envelope]]) -> set[str]:
    """:func:`claim` for many ``(topic, envelope)`` in one statement: the ids claimed now
    (an id given twice is claimed once)."""
    rows = await sql.fetch(_CLAIM, _params(group_id, events))
    return {row["event_id"] for row in rows}


async def claim_all(sql: Sql, group_id: str, events: list[tuple[str, Envelope]]) -> None:
    """Claim every one of ``events`` (distinct ids) with the unit of work's commit, as the
    condition of its writes: if any was claimed before, the commit stores nothing and
    raises ``ConditionFailed``."""
    distinct = len({env.id for _, env in events})
    await sql.defer_condition(_CLAIM_ALL, _params(group_id, events), rows=distinct)


def _params(group_id: str, events: list[tuple[str, Envelope]]) -> dict[str, object]:
    unique: dict[str, tuple[str, Envelope]] = {}
    for topic, env in events:
        unique.setdefault(env.id, (topic, env))
    return {
        "event_ids": list(unique),
        "consumer": group_id,
        "topics": [topic for topic, _ in unique.values()],
        "ce_types": [env.type for _, env in unique.values()],
    }
