"""HTTP routes of the notice service: the notifications, read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from notice import handlers
from notice.repository import NoticeUnitOfWork, Notification


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class NoticeOut(Schema):
    id: int
    event_id: str
    event_type: str
    user_id: str | None
    request_kind: str
    request_id: int
    text: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, n: Notification) -> NoticeOut:
        return cls(
            id=n.id,
            event_id=n.event_id,
            event_type=n.event_type,
            user_id=n.user_id,
            request_kind=n.request_kind,
            request_id=n.request_id,
            text=n.text,
            status=n.status,
            attempts=n.attempts,
            last_error=n.last_error,
            created_at=n.created_at,
            sent_at=n.sent_at,
        )


def unit_of_work(request: Request) -> NoticeUnitOfWork:
    return request.app.state.uow_factory()


Uow = Annotated[NoticeUnitOfWork, Depends(unit_of_work)]

router = APIRouter(prefix="/notices", tags=["notices"])


@router.get("")
async def list_all(
    uow: Uow,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[NoticeOut]:
    return [NoticeOut.of(n) for n in await handlers.list_notices(uow, user_id, limit, offset)]


@router.get("/{id}")
async def read(uow: Uow, id: Annotated[int, Path(gt=0)]) -> NoticeOut:
    return NoticeOut.of(await handlers.get(uow, id))
