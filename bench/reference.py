"""The reference: a minimal FastAPI + asyncpg service doing what ``POST /models`` must do.

One transaction, two INSERTs: the request row and its outbox row (the event's JSON). No
ORM, no tracing, no logging per request; uvicorn as the platform runs it. Run by
``bench.platform`` as ``uvicorn bench.reference:app`` with ``REFERENCE_DATABASE_URL`` set.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Form

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_requests (
    id bigserial PRIMARY KEY, user_id varchar(255) NOT NULL, model_name varchar(255) NOT NULL,
    state varchar(32) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS outbox (
    id bigserial PRIMARY KEY, event_id varchar(64) NOT NULL UNIQUE, topic varchar(255) NOT NULL,
    key varchar(255) NOT NULL, payload json NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz);
"""
INSERT_REQUEST = (
    "INSERT INTO model_requests (user_id, model_name, state) VALUES ($1, $2, 'requested') "
    "RETURNING id"
)
INSERT_EVENT = "INSERT INTO outbox (event_id, topic, key, payload) VALUES ($1, $2, $3, $4)"

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["REFERENCE_DATABASE_URL"], min_size=10, max_size=20)
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/models", status_code=201)
async def create(userId: str = Form(...), modelName: str = Form(...)) -> dict[str, object]:
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        request_id = await conn.fetchval(INSERT_REQUEST, userId, modelName)
        event = {
            "eventType": "Requested",
            "timestamp": int(time.time() * 1000),
            "id": request_id,
            "state": "requested",
            "userId": userId,
            "modelName": modelName,
        }
        await conn.execute(
            INSERT_EVENT, str(uuid.uuid4()), "model.events", str(request_id), json.dumps(event)
        )
    return {"id": request_id, "userId": userId, "modelName": modelName, "state": "requested"}
