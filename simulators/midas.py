"""MIDAS: the LMS bulk-send system. Idempotent by the ``Idempotency-Key`` header."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from simulators.faults import Faults, FaultSwitch


class BulkSend(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    target_id: int
    user_id: str
    audience_size: int = Field(ge=0)
    message: str = ""


def midas_router() -> APIRouter:
    router = APIRouter(prefix="/midas", tags=["midas"])
    switch = FaultSwitch("midas", 503)
    sends: dict[str, dict[str, object]] = {}

    @router.post("/lms/bulk")
    async def bulk_send(
        body: BulkSend,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        if not idempotency_key:
            raise HTTPException(400, "Idempotency-Key header is required")
        await switch.before_answer()
        if idempotency_key in sends:
            send = sends[idempotency_key]
            return JSONResponse({"sendId": send["sendId"], "status": "accepted"}, status_code=200)
        send = {
            "sendId": uuid.uuid4().hex[:12],
            "idempotencyKey": idempotency_key,
            **body.model_dump(by_alias=True),
            "acceptedAt": datetime.now(UTC).isoformat(),
        }
        sends[idempotency_key] = send
        print(
            f"midas> LMS bulk send {send['sendId']} for target #{body.target_id} "
            f"({body.audience_size} recipients)",
            flush=True,
        )
        return JSONResponse({"sendId": send["sendId"], "status": "accepted"}, status_code=202)

    @router.get("/sends")
    async def list_sends() -> list[dict[str, object]]:
        return list(sends.values())

    @router.put("/_faults")
    async def set_faults(faults: Faults) -> Faults:
        return switch.set(faults)

    @router.delete("/_received", status_code=204)
    async def clear() -> None:
        sends.clear()

    return router
