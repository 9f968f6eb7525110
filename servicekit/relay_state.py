"""What an outbox relay remembers in its service's database: the broker cluster it
published to, and what retention pruned.

A broker that answers with another cluster id than the remembered one is not the
broker the outbox was published to (the embedded broker gets a fresh id at every
start and keeps nothing), so every retained row goes out again: in one transaction
the retained rows become unpublished and the new id is remembered, and the relay's
ordinary path publishes them in id order, before any row written after that moment
(``republish_through``). A real Kafka keeps its id: nothing is re-published there.
The first id a relay meets is only recorded. :func:`outbox_counts` says how many
events the log holds and how many the broker of record acked (``GET /health/outbox``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import MetaData, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.tables import outbox_table, relay_state_table

RELAY_STATE = relay_state_table(MetaData())
OUTBOX = outbox_table(MetaData())


@dataclass(frozen=True)
class Memory:
    cluster_id: str | None = None  # None: no broker met yet
    republish_through: int | None = None  # rows up to this id go out before newer ones
    republish_missing: int = 0  # events the last re-publish lacked (pruned by retention)


@dataclass(frozen=True)
class Republish:
    previous: str
    current: str
    rows: int  # retained rows made unpublished, to go out again
    through: int | None
    missing: int  # pruned rows: published to the lost broker, gone from the outbox


async def load(engine: AsyncEngine, relay: str) -> Memory:
    async with engine.connect() as conn:
        row = (await conn.execute(select(RELAY_STATE).where(RELAY_STATE.c.relay == relay))).first()
    if row is None:
        return Memory()
    return Memory(row.cluster_id, row.republish_through, row.republish_missing)


async def meet(engine: AsyncEngine, relay: str, cluster_id: str) -> Republish | None:
    """Remember ``cluster_id``; when another one was remembered, mark every retained row
    unpublished in the same transaction and say what goes out again."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(RELAY_STATE).where(RELAY_STATE.c.relay == relay).with_for_update()
            )
        ).first()
        if row is None:
            await conn.execute(
                insert(RELAY_STATE)
                .values(relay=relay, cluster_id=cluster_id)
                .on_conflict_do_update(
                    index_elements=[RELAY_STATE.c.relay], set_={"cluster_id": cluster_id}
                )
            )
            return None
        if row.cluster_id == cluster_id:
            return None
        through = await conn.scalar(select(func.max(OUTBOX.c.id)))
        rows = await conn.scalar(select(func.count()).select_from(OUTBOX)) or 0
        await conn.execute(
            update(OUTBOX).where(OUTBOX.c.published_at.is_not(None)).values(published_at=None)
        )
        await conn.execute(
            update(RELAY_STATE)
            .where(RELAY_STATE.c.relay == relay)
            .values(
                cluster_id=cluster_id,
                republish_through=through,
                republish_missing=row.pruned_rows,
                updated_at=func.now(),
            )
        )
    return Republish(row.cluster_id, cluster_id, rows, through, row.pruned_rows)


async def republished(engine: AsyncEngine, relay: str) -> None:
    """Every row up to ``republish_through`` went out again: new rows may follow."""
    async with engine.begin() as conn:
        await conn.execute(
            update(RELAY_STATE)
            .where(RELAY_STATE.c.relay == relay)
            .values(republish_through=None, updated_at=func.now())
        )


async def prune(engine: AsyncEngine, relay: str, published_before: datetime) -> None:
    """Delete the rows published before ``published_before``, and count them in the same
    transaction: they can never be published again."""
    async with engine.begin() as conn:
        pruned = await conn.execute(
            delete(OUTBOX).where(
                OUTBOX.c.published_at.is_not(None), OUTBOX.c.published_at < published_before
            )
        )
        if pruned.rowcount:
            await conn.execute(
                update(RELAY_STATE)
                .where(RELAY_STATE.c.relay == relay)
                .values(pruned_rows=RELAY_STATE.c.pruned_rows + pruned.rowcount)
            )


async def outbox_counts(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Per topic: rows retained, published (acked by the broker of record) and waiting.
    Counts only; what a replay compares its reading with."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OUTBOX.c.topic, func.count(), func.count(OUTBOX.c.published_at)).group_by(
                    OUTBOX.c.topic
                )
            )
        ).all()
    return {
        topic: {"retained": total, "published": published, "unpublished": total - published}
        for topic, total, published in rows
    }
