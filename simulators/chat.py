"""Swing chat: a Slack-compatible incoming webhook that shows what it received."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from simulators.faults import Faults, FaultSwitch


class WebhookMessage(BaseModel):
    text: str = Field(min_length=1)


def chat_router() -> APIRouter:
    router = APIRouter(prefix="/chat", tags=["chat"])
    switch = FaultSwitch("chat", 500)
    messages: list[dict[str, str]] = []

    @router.post("/webhook")
    async def webhook(message: WebhookMessage) -> PlainTextResponse:
        await switch.before_answer()
        messages.append({"text": message.text, "receivedAt": datetime.now(UTC).isoformat()})
        print(f"chat> {message.text}", flush=True)
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

    return router
