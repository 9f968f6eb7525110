"""Model's own answer about one model request, for an approval target's events lag behind.

target keeps its own record of each model's state from model's events, a moment after model
commits it. A client that saw ``GET /models/{id}`` say ``completed`` and approves a target
at once would meet that moment as a 409. So an approval whose record is not yet completed
asks model (``GET /models/{id}``, with the approving admin's own token, which model verifies
as any call) and takes a ``completed`` answer into the record; the event that follows
changes nothing. No answer (model down, slow, another status): the record decides, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

import httpx
import structlog
from fastapi import Request
from opentelemetry import propagate

log = structlog.get_logger(__name__)


class ModelAnswer(NamedTuple):
    state: str
    user_id: str | None


AskModel = Callable[[int], Awaitable[ModelAnswer | None]]


class ModelView:
    """``GET {base_url}/models/{id}``; rare (only approvals that outrun the events), so a
    client per call: nothing to keep open or to close."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def asking_as(self, authorization: str | None) -> AskModel:
        async def ask(model_request_id: int) -> ModelAnswer | None:
            headers = {"Authorization": authorization} if authorization else {}
            propagate.inject(headers)  # the approval's trace goes on into model
            url = f"{self.base_url}/models/{model_request_id}"
            try:
                async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                    response = await http.get(url, headers=headers)
                if response.status_code != 200:
                    log.info("model did not tell its state", status=response.status_code)
                    return None
                body = response.json()
                return ModelAnswer(str(body["state"]), body.get("userId"))
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning("model not asked for its state", error=type(exc).__name__)
                return None

        return ask


async def ask_model(request: Request) -> AskModel:
    """FastAPI dependency: model asked as the request's caller (``app.state.model_view``)."""
    view: ModelView = request.app.state.model_view
    return view.asking_as(request.headers.get("authorization"))
