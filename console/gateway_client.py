"""The console's one way to the platform: the gateway's API, with the user's token.

Every call names the session whose token it carries. An access token within
``RENEW_BEFORE_S`` of its end, or refused with a 401, is renewed once with the session's
refresh token (``POST /auth/refresh``); a 401 after that means access has ended (signed out
elsewhere, disabled, a role taken away): :class:`SessionExpired` ends the session and sends
the browser to sign-in. Other answers come back as :class:`Answer` for the page to show.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from console.sessions import Session

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
RENEW_BEFORE_S = 30.0


class SessionExpired(Exception):
    """The API refused the session's token."""


class GatewayDown(Exception):
    """The gateway did not answer."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    token_sent: str = ""  # the session's access token the call carried

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
        if (
            session is not None
            and token is None
            and session.refresh_token
            and session.token_expires_at - time.time() < RENEW_BEFORE_S
        ):
            await self.renew(session, session.token)
        answer = await self._send(method, path, session, params, json, data, token, idempotency_key)
        if answer.status == 401 and session is not None and token is None:
            if session.refresh_token and await self.renew(session, answer.token_sent):
                answer = await self._send(
                    method, path, session, params, json, data, token, idempotency_key
                )
            if answer.status == 401:
                raise SessionExpired(path)
        return answer

    async def renew(self, session: Session, stale_token: str) -> bool:
        """Swap the session's refresh token for a new pair, unless another call already did
        (its token is no longer ``stale_token``); False when the gateway refused it."""
        async with session.renewing:
            if session.token != stale_token:
                return True
            try:
                response = await self._client.post(
                    "/auth/refresh", data={"refresh_token": session.refresh_token or ""}
                )
            except httpx.HTTPError as exc:
                raise GatewayDown(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code != 200:
                return False
            body = response.json()
            now = time.time()
            session.renewed(
                body["access_token"],
                now + float(body.get("expires_in", 0)),
                body["refresh_token"],
                now + float(body.get("refresh_expires_in", 0)),
            )
            return True

    async def _send(
        self,
        method: str,
        path: str,
        session: Session | None,
        params: dict[str, Any] | None,
        json: Any,
        data: dict[str, str] | None,
        token: str | None,
        idempotency_key: str,
    ) -> Answer:
        headers = session.auth() if session is not None else {}
        sent = session.token if session is not None else ""
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
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body, sent)

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
