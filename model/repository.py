"""Loading and storing ModelRequests; the unit of work that carries the repository."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from model.domain import ModelRequest, State
from model.tables import model_request_ids, model_requests
from servicekit.db import EventSource, UnitOfWork
from servicekit.ids import IdBlocks
from servicekit.sql import RowLoad, Sql, Statement

_COLUMNS = (
    "user_id",
    "model_name",
    "state",
    "reason",
    "step",
    "total_steps",
    "created_at",
    "updated_at",
)

_INSERT = insert(model_requests)
_SAVE = Statement(
    _INSERT.on_conflict_do_update(
        index_elements=[model_requests.c.id], set_={c: _INSERT.excluded[c] for c in _COLUMNS}
    ),
    columns=("id", *_COLUMNS),
)
_BY_ID = select(model_requests).where(model_requests.c.id == bindparam("id"))
_GET = Statement(_BY_ID)
_GET_FOR_UPDATE = RowLoad(_BY_ID, model_requests)
_IDS = IdBlocks(model_request_ids)


class ModelRequestRepository:
    def __init__(
        self, session: AsyncSession, sql: Sql, track: Callable[[EventSource], None]
    ) -> None:
        self.session = session
        self.sql = sql
        self.track = track

    async def next_id(self) -> int:
        return await _IDS.next(self.sql)

    async def get(self, id: int, *, for_update: bool = True) -> ModelRequest | None:
        """Load one request; locked by default so changes to one request serialize."""
        if for_update:
            row = await self.sql.fetchrow_for_update(_GET_FOR_UPDATE, {"id": id})
        else:
            row = await self.sql.fetchrow(_GET, {"id": id})
        if row is None:
            return None
        req = ModelRequest(**{**row, "state": State(row["state"])})
        self.track(req)
        return req

    async def list(
        self, user_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ModelRequest]:
        query = select(model_requests).order_by(model_requests.c.id).limit(limit).offset(offset)
        if user_id is not None:
            query = query.where(model_requests.c.user_id == user_id)
        rows = (await self.session.execute(query)).mappings().all()
        return [ModelRequest(**{**row, "state": State(row["state"])}) for row in rows]

    async def save(self, req: ModelRequest) -> None:
        self.track(req)
        values = {c: getattr(req, c) for c in _COLUMNS}
        values["state"] = req.state.value
        await self.sql.defer(_SAVE, {"id": req.id, **values})  # written at the commit


class ModelUnitOfWork(UnitOfWork):
    requests: ModelRequestRepository

    def on_begin(self) -> None:
        self.requests = ModelRequestRepository(self.session, self.sql, self.track)
