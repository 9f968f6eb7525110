"""Swing chat: a Slack-compatible incoming webhook that shows what it received.

A post whose ``Idempotency-Key`` was seen before is answered like the first and not shown
again (a sender that crashed after our answer and before its commit posts it again)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from simulators.faults import Faults, FaultSwitch


class WebhookMessage(BaseModel):
    text: str = Field(min_length=1)


def chat_router() -> APIRouter:
    router = APIRouter(prefix="/chat", tags=["chat"])
    switch = FaultSwitch("chat", 500)
    messages: list[dict[str, str]] = []
    keys: set[str] = set()

    @router.post("/webhook")
    async def webhook(
        message: WebhookMessage,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> PlainTextResponse:
        await switch.before_answer()
        if idempotency_key is None or idempotency_key not in keys:
            messages.append({"text": message.text, "receivedAt": datetime.now(UTC).isoformat()})
            print(f"chat> {message.text}", flush=True)
        if idempotency_key is not None:
            keys.add(idempotency_key)
        return PlainTextResponse("ok")  # what Slack answers

    @router.get("/messages")
    async def list_messages() -> list[dict[str, str]]:
        return messages

    @router.put("/_faults")
    async def set_faults(faults: Faults) -> Faults:
        return switch.set(faults)

    @router.delete("/_received", status_code=204)
    async def clear() -> None:
        messages.clear()
        keys.clear()

    return router
