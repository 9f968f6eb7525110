"""HTTP routes of mypage_cqrs: read-only, each one call into handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from mypage_cqrs import handlers
from mypage_cqrs.repository import MypageUnitOfWork
from mypage_cqrs.view import MyRequest
from servicekit.auth import Caller, listing_for
from servicekit.http import Limit, Offset, Schema, UserFilter, ensure_visible, unit_of_work


class MyRequestOut(Schema):
    id: str
    kind: str
    request_id: int
    user_id: str
    name: str | None
    model_request_id: int | None
    state: str
    progress: int
    step: int
    total_steps: int
    reason: str | None
    lms_status: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: MyRequest) -> MyRequestOut:
        return cls(
            id=row.id,
            kind=row.kind,
            request_id=row.request_id,
            user_id=row.user_id or "",
            name=row.name,
            model_request_id=row.model_request_id,
            state=row.state or "",
            progress=row.progress,
            step=row.step,
            total_steps=row.total_steps,
            reason=row.shown_reason,
            lms_status=row.lms_status,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


Uow = Annotated[MypageUnitOfWork, Depends(unit_of_work)]

router = APIRouter(prefix="/myRequests", tags=["myRequests"])


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[MyRequestOut]:
    """A user's requests (all users' without ``userId``), oldest first."""
    return [
        MyRequestOut.of(r)
        for r in await handlers.list_requests(uow, listing_for(who, user_id), limit, offset)
    ]


@router.get("/{id}")
async def read(uow: Uow, who: Caller, id: Annotated[str, Path(max_length=64)]) -> MyRequestOut:
    """One request by view id: ``model-1`` or ``target-2``."""
    row = await handlers.get(uow, id)
    ensure_visible(who, row.user_id, "my request", id)
    return MyRequestOut.of(row)
