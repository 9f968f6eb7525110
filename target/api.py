"""HTTP routes of the target service: thin, each one call into handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, status

from servicekit.auth import Caller, acting_for, listing_for, require_admin
from servicekit.http import (
    ApproveById,
    Body,
    Cancellation,
    Id,
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
from target import handlers
from target.handlers import TargetView
from target.model_view import AskModel, ask_model
from target.repository import TargetUnitOfWork


class NewTargetRequest(Body):
    user_id: Name
    type: Name
    model_request_id: Id
    # The seed's clients send state=request; the server decides the state.
    state: Literal["request", "requested"] | None = None


class TargetRequestOut(Schema):
    id: int
    user_id: str
    type: str
    model_request_id: int
    model_state: str | None  # target's own record of the model, from model's events
    state: str
    reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: TargetView) -> TargetRequestOut:
        req = view.target
        return cls(
            id=req.id,
            user_id=req.user_id,
            type=req.type,
            model_request_id=req.model_request_id,
            model_state=view.model_state,
            state=req.state.value,
            reason=req.reason,
            created_at=req.created_at,
            updated_at=req.updated_at,
        )


Uow = Annotated[TargetUnitOfWork, Depends(unit_of_work)]
ModelAsked = Annotated[AskModel, Depends(ask_model)]

# Creating, approving, rejecting and cancelling honour Idempotency-Key.
router = APIRouter(prefix="/targets", tags=["targets"], route_class=IdempotentRoute)


@router.post("", status_code=status.HTTP_201_CREATED, response_model_by_alias=True)
async def create(
    uow: Uow, who: Caller, body: Annotated[NewTargetRequest, Depends(body_of(NewTargetRequest))]
) -> TargetRequestOut:
    view = await handlers.request_target(
        uow,
        acting_for(who, body.user_id),
        body.type,
        body.model_request_id,
        any_model=who.sees_all,
    )
    return TargetRequestOut.of(view)


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[TargetRequestOut]:
    views = await handlers.list_targets(uow, listing_for(who, user_id), limit, offset)
    return [TargetRequestOut.of(v) for v in views]


@router.get("/{id}")
async def read(uow: Uow, who: Caller, id: PositiveId) -> TargetRequestOut:
    view = await handlers.get(uow, id)
    ensure_visible(who, view.target.user_id, "target request", id)
    return TargetRequestOut.of(view)


@router.put("")
async def approve_by_body(
    uow: Uow,
    who: Caller,
    ask: ModelAsked,
    body: Annotated[ApproveById, Depends(body_of(ApproveById))],
) -> TargetRequestOut:
    """The seed's approve call: ``PUT /targets`` with ``{"id": N}``."""
    require_admin(who, "approve a target request")
    return TargetRequestOut.of(await handlers.approve(uow, body.id, who.subject, ask))


@router.put("/{id}")
async def approve(uow: Uow, who: Caller, ask: ModelAsked, id: PositiveId) -> TargetRequestOut:
    require_admin(who, "approve a target request")
    return TargetRequestOut.of(await handlers.approve(uow, id, who.subject, ask))


@router.put("/{id}/reject")
async def reject(
    uow: Uow, who: Caller, id: PositiveId, body: Annotated[Rejection, Depends(body_of(Rejection))]
) -> TargetRequestOut:
    require_admin(who, "reject a target request")
    return TargetRequestOut.of(await handlers.reject(uow, id, body.reason, who.subject))


@router.put("/{id}/cancel")
async def cancel(
    uow: Uow,
    who: Caller,
    id: PositiveId,
    body: Annotated[Cancellation, Depends(body_of(Cancellation))],
) -> TargetRequestOut:
    view = await handlers.get(uow, id)
    ensure_visible(who, view.target.user_id, "target request", id)
    return TargetRequestOut.of(await handlers.cancel(uow, id, body.reason, who.subject))
