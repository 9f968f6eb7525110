"""Loading and storing TargetRequests and model records; the unit of work that carries them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from asyncpg import Record
from sqlalchemy import RowMapping, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import EventSource, UnitOfWork
from servicekit.ids import IdBlocks
from servicekit.sql import Sql, Statement
from target.domain import ModelRecord, State, TargetRequest
from target.tables import model_requests, target_ids, targets

_COLUMNS = ("user_id", "type", "model_request_id", "state", "reason", "created_at", "updated_at")
_OPEN = (State.REQUESTED.value, State.APPROVED.value)

_BY_ID = select(targets).where(targets.c.id == bindparam("id"))
_IDS = IdBlocks(target_ids)
_GET = Statement(_BY_ID)
_GET_FOR_UPDATE = Statement(_BY_ID.with_for_update())
_INSERT = insert(targets)
_SAVE = Statement(
    _INSERT.on_conflict_do_update(
        index_elements=[targets.c.id], set_={c: _INSERT.excluded[c] for c in _COLUMNS}
    ),
    columns=("id", *_COLUMNS),
)
_LOCK_KEY = func.hashtextextended(
    func.concat("target.model_requests:", bindparam("id", type_=String)), 0
)
_LOCK = Statement(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
_LOCK_SHARED = Statement(select(func.pg_advisory_xact_lock_shared(_LOCK_KEY)))
_RECORD_COLUMNS = ("state", "updated_at", "user_id")
_GET_RECORD = Statement(
    select(model_requests).where(model_requests.c.model_request_id == bindparam("id"))
)
_INSERT_RECORD = insert(model_requests)
_SAVE_RECORD = Statement(
    _INSERT_RECORD.on_conflict_do_update(
        index_elements=[model_requests.c.model_request_id],
        set_={c: _INSERT_RECORD.excluded[c] for c in _RECORD_COLUMNS},
    ),
    columns=("model_request_id", *_RECORD_COLUMNS),
)


class TargetRepository:
    def __init__(
        self, session: AsyncSession, sql: Sql, track: Callable[[EventSource], None]
    ) -> None:
        self.session = session
        self.sql = sql
        self.track = track

    async def next_id(self) -> int:
        return await _IDS.next(self.sql)

    async def get(self, id: int, *, for_update: bool = True) -> TargetRequest | None:
        """Load one target; locked by default so changes to one target serialize."""
        query = _GET_FOR_UPDATE if for_update else _GET
        row = await self.sql.fetchrow(query, {"id": id})
        if row is None:
            return None
        req = _target(row)
        self.track(req)
        return req

    async def list(
        self, user_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[TargetRequest]:
        query = select(targets).order_by(targets.c.id).limit(limit).offset(offset)
        if user_id is not None:
            query = query.where(targets.c.user_id == user_id)
        rows = (await self.session.execute(query)).mappings().all()
        return [_target(row) for row in rows]

    async def open_for_model(self, model_request_id: int) -> list[TargetRequest]:
        """The targets of one model that are still requested or approved, locked."""
        query = (
            select(targets)
            .where(targets.c.model_request_id == model_request_id, targets.c.state.in_(_OPEN))
            .order_by(targets.c.id)
            .with_for_update()
        )
        found = [_target(row) for row in (await self.session.execute(query)).mappings().all()]
        for req in found:
            self.track(req)
        return found

    async def save(self, req: TargetRequest) -> None:
        self.track(req)
        values = {c: getattr(req, c) for c in _COLUMNS}
        values["state"] = req.state.value
        await self.sql.defer(_SAVE, {"id": req.id, **values})  # written at the commit


class ModelRecordRepository:
    def __init__(self, session: AsyncSession, sql: Sql) -> None:
        self.session = session
        self.sql = sql

    async def lock(self, model_request_id: int, *, shared: bool = False) -> None:
        """Serialize, until the transaction ends, new targets of a model (``shared``) with
        the changes of its state (exclusive), whether or not target knows the model yet:
        a target accepted concurrently with the model's cancellation is then either
        refused or cancelled by it, never left behind."""
        lock = _LOCK_SHARED if shared else _LOCK
        await self.sql.fetchval(lock, {"id": str(model_request_id)})

    async def get(self, model_request_id: int) -> ModelRecord | None:
        row = await self.sql.fetchrow(_GET_RECORD, {"id": model_request_id})
        return ModelRecord(**row) if row is not None else None

    async def states(self, model_request_ids: Iterable[int]) -> dict[int, str]:
        ids = set(model_request_ids)
        if not ids:
            return {}
        query = select(model_requests.c.model_request_id, model_requests.c.state).where(
            model_requests.c.model_request_id.in_(ids)
        )
        return {row.model_request_id: row.state for row in await self.session.execute(query)}

    async def save(self, record: ModelRecord) -> None:
        values = {"state": record.state, "updated_at": record.updated_at, "user_id": record.user_id}
        await self.sql.defer(_SAVE_RECORD, {"model_request_id": record.model_request_id, **values})


def _target(row: RowMapping | Record) -> TargetRequest:
    return TargetRequest(**{**row, "state": State(row["state"])})


class TargetUnitOfWork(UnitOfWork):
    targets: TargetRepository
    models: ModelRecordRepository

    def on_begin(self) -> None:
        self.targets = TargetRepository(self.session, self.sql, self.track)
        self.models = ModelRecordRepository(self.session, self.sql)
