"""The console's one way to the platform: the gateway's API, with the user's token.

Every call names the session whose token it carries. A 401 means the token is no longer
accepted (expired, keys rotated): :class:`SessionExpired` ends the session and sends the
browser to sign-in. Other answers come back as :class:`Answer` for the page to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from console.sessions import Session

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class SessionExpired(Exception):
    """The API refused the session's token."""


class GatewayDown(Exception):
    """The gateway did not answer."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail", ""))
        return ""

    @property
    def field_errors(self) -> dict[str, str]:
        """A 422's messages by field name (the API names fields as the forms do)."""
        errors = self.body.get("errors", []) if isinstance(self.body, dict) else []
        found: dict[str, str] = {}
        for e in errors:
            if isinstance(e, dict):
                found.setdefault(str(e.get("field", "")), str(e.get("message", "")))
        return found


class GatewayClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        session: Session | None,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        token: str | None = None,
        idempotency_key: str = "",
    ) -> Answer:
        headers = session.auth() if session is not None else {}
        if token is not None:
            headers = {"Authorization": f"Bearer {token}"}
        if IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            # The form's own key: a double submit is answered as the first one was.
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await self._client.request(
                method, path, params=params, json=json, data=data, headers=headers
            )
        except httpx.HTTPError as exc:
            raise GatewayDown(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 401 and session is not None:
            raise SessionExpired(path)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body)

    async def get(self, path: str, session: Session, **params: Any) -> Answer:
        return await self.call("GET", path, session, params=params or None)

    async def get_list(self, path: str, session: Session, **params: Any) -> list[dict[str, Any]]:
        """Every row of a listing (pages of 1000), or an empty list if refused."""
        rows: list[dict[str, Any]] = []
        while True:
            answer = await self.get(path, session, limit=1000, offset=len(rows), **params)
            if not answer.ok or not isinstance(answer.body, list):
                return rows
            rows.extend(answer.body)
            if len(answer.body) < 1000:
                return rows
