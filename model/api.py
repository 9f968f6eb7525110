"""HTTP routes of the model service: thin, each one call into handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, status

from model import handlers
from model.domain import ModelRequest
from model.repository import ModelUnitOfWork
from servicekit.auth import Caller, acting_for, listing_for, require_admin
from servicekit.http import (
    ApproveById,
    Body,
    Cancellation,
    Limit,
    Name,
    Offset,
    PositiveId,
    Rejection,
    Schema,
    UserFilter,
    body_of,
    ensure_visible,
    unit_of_work,
)
from servicekit.idempotency import IdempotentRoute


class NewModelRequest(Body):
    user_id: Name
    model_name: Name
    # The seed's clients send state=request; the server decides the state.
    state: Literal["request", "requested"] | None = None


class ModelRequestOut(Schema):
    id: int
    user_id: str
    model_name: str
    state: str
    reason: str | None
    progress: int
    step: int
    total_steps: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, req: ModelRequest) -> ModelRequestOut:
        return cls.model_validate(req, from_attributes=True)


Uow = Annotated[ModelUnitOfWork, Depends(unit_of_work)]

# Creating, approving, rejecting and cancelling honour Idempotency-Key.
router = APIRouter(prefix="/models", tags=["models"], route_class=IdempotentRoute)


@router.post("", status_code=status.HTTP_201_CREATED, response_model_by_alias=True)
async def create(
    uow: Uow, who: Caller, body: Annotated[NewModelRequest, Depends(body_of(NewModelRequest))]
) -> ModelRequestOut:
    return ModelRequestOut.of(
        await handlers.request_model(uow, acting_for(who, body.user_id), body.model_name)
    )


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ModelRequestOut]:
    return [
        ModelRequestOut.of(r)
        for r in await handlers.list_requests(uow, listing_for(who, user_id), limit, offset)
    ]


@router.get("/{id}")
async def read(uow: Uow, who: Caller, id: PositiveId) -> ModelRequestOut:
    req = await handlers.get(uow, id)
    ensure_visible(who, req.user_id, "model request", id)
    return ModelRequestOut.of(req)


@router.put("")
async def approve_by_body(
    uow: Uow, who: Caller, body: Annotated[ApproveById, Depends(body_of(ApproveById))]
) -> ModelRequestOut:
    """The seed's approve call: ``PUT /models`` with ``{"id": N}``."""
    require_admin(who, "approve a model request")
    return ModelRequestOut.of(await handlers.approve(uow, body.id, who.subject))


@router.put("/{id}")
async def approve(uow: Uow, who: Caller, id: PositiveId) -> ModelRequestOut:
    require_admin(who, "approve a model request")
    return ModelRequestOut.of(await handlers.approve(uow, id, who.subject))


@router.put("/{id}/reject")
async def reject(
    uow: Uow, who: Caller, id: PositiveId, body: Annotated[Rejection, Depends(body_of(Rejection))]
) -> ModelRequestOut:
    require_admin(who, "reject a model request")
    return ModelRequestOut.of(await handlers.reject(uow, id, body.reason, who.subject))


@router.put("/{id}/cancel")
async def cancel(
    uow: Uow,
    who: Caller,
    id: PositiveId,
    body: Annotated[Cancellation, Depends(body_of(Cancellation))],
) -> ModelRequestOut:
    req = await handlers.get(uow, id)
    ensure_visible(who, req.user_id, "model request", id)
    return ModelRequestOut.of(await handlers.cancel(uow, id, body.reason, who.subject))
