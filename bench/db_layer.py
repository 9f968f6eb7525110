"""CPU of one ``POST /models`` transaction in the database layer: SQLAlchemy vs asyncpg.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.db_layer --ops 3000 --rounds 3

On an embedded PostgreSQL it starts (the model's migrations applied), one client process
runs the same transaction ``--ops`` times, one after another, four ways:

- ``handler``: ``model.handlers.request_model`` on the service's own unit of work (what the
  POST runs: SQLAlchemy Core on an ``AsyncConnection``, the model's statements built once);
- ``sqlalchemy``: the same five round trips (BEGIN, next id, the request row, its outbox
  row, COMMIT) as bare ``AsyncConnection.execute`` calls, without the domain and envelope;
- ``asyncpg``: the same five on a plain asyncpg pool;
- ``asyncpg-begin-commit``: BEGIN, ``SELECT 1``, COMMIT on asyncpg (the floor).

It prints the client process's CPU µs per transaction (``time.process_time``; the server's
CPU is not in it), medians of the rounds. The gap between ``sqlalchemy`` and ``asyncpg``
is what SQLAlchemy's async layer costs per statement, on every service's every statement.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import uvloop
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from bench.procs import client_cpu_us
from model import handlers
from model.repository import _COLUMNS, ModelUnitOfWork
from model.tables import model_request_ids, model_requests
from nocode.embedded_postgres import EmbeddedPostgres
from servicekit import migrations
from servicekit.db import asyncpg_dsn, make_engine
from servicekit.logging import configure_logging
from servicekit.outbox import OUTBOX, OutboxWriter
from tests.support import free_port

# The same statements as Core, run through SQLAlchemy's AsyncConnection.
_NEXT_ID = select(model_request_ids.next_value())
_INSERT = insert(model_requests)
_SAVE = _INSERT.on_conflict_do_update(
    index_elements=[model_requests.c.id], set_={c: _INSERT.excluded[c] for c in _COLUMNS}
)
_OUTBOX_INSERT = insert(OUTBOX)

RAW_NEXT_ID = "SELECT nextval('model_requests_id_seq')"
RAW_SAVE = (
    "INSERT INTO model_requests (id, user_id, model_name, state, reason, step, total_steps, "
    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO "
    "UPDATE SET user_id = excluded.user_id, model_name = excluded.model_name, state = "
    "excluded.state, reason = excluded.reason, step = excluded.step, total_steps = "
    "excluded.total_steps, created_at = excluded.created_at, updated_at = excluded.updated_at"
)
RAW_OUTBOX = (
    "INSERT INTO outbox (event_id, topic, key, ce_type, source, occurred_at, payload, "
    "traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
PAYLOAD = {"eventType": "Requested", "id": 0, "state": "requested", "userId": "bench"}

Op = Callable[[], Awaitable[None]]


async def measure(url: str, ops: int, rounds: int) -> dict[str, float]:
    engine = make_engine(url)
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=2, max_size=2)
    outbox = OutboxWriter("model")
    now = datetime.now(UTC)

    async def handler() -> None:
        await handlers.request_model(ModelUnitOfWork(engine, outbox), "bench", "m")

    async def sqlalchemy() -> None:
        async with engine.connect() as conn:
            id = int(await conn.scalar(_NEXT_ID))
            row = (id, "bench", "m", "requested", None, 0, 0, now, now)
            await conn.execute(_SAVE, dict(zip(_SAVE_KEYS, row, strict=True)))
            await conn.execute(_OUTBOX_INSERT, _outbox_values(id, now, PAYLOAD))
            await conn.commit()

    async def raw() -> None:
        async with pool.acquire() as conn, conn.transaction():
            id = await conn.fetchval(RAW_NEXT_ID)
            await conn.execute(RAW_SAVE, id, "bench", "m", "requested", None, 0, 0, now, now)
            values = _outbox_values(id, now, orjson.dumps(PAYLOAD).decode())
            await conn.execute(RAW_OUTBOX, *values.values())

    async def floor() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetchval("SELECT 1")

    ways: dict[str, Op] = {
        "handler": handler,
        "sqlalchemy": sqlalchemy,
        "asyncpg": raw,
        "asyncpg-begin-commit": floor,
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, op in ways.items():
            results[name].append(await client_cpu_us(op, ops))
    await pool.close()
    await engine.dispose()
    return {name: statistics.median(values) for name, values in results.items()}


_SAVE_KEYS = ("id", "user_id", "model_name", "state", "reason", "step", "total_steps")
_SAVE_KEYS += ("created_at", "updated_at")


def _outbox_values(id: int, now: datetime, payload: object) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "topic": "model.events",
        "key": str(id),
        "ce_type": "nocode.model.Requested",
        "source": "/nocode/model",
        "occurred_at": now,
        "payload": payload,
        "traceparent": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("bench", "WARNING")
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="nocode-db-layer-")), free_port())
    server.start()
    try:
        uvloop.run(server.create_databases(["model"]))
        url = server.url("model")
        migrations.upgrade("model", url)
        results = uvloop.run(measure(url, args.ops, args.rounds))
    finally:
        server.stop()
    print(f"| way ({args.ops} transactions, median of {args.rounds}) | client CPU µs |")
    print("|---|---:|")
    for name, us in results.items():
        print(f"| {name} | {us:.0f} |")


if __name__ == "__main__":
    main()
