"""Browser sessions, kept in this process's memory.

A session id is 32 random bytes (an opaque cookie value that means nothing without this
process); the store holds the user's access and refresh tokens, which never leave the
server, and the session's CSRF token. The short-lived access token is renewed with the
refresh token as it nears its end (:mod:`console.gateway_client`). A session ends on
sign-out, after ``idle_s`` without a request, when its refresh token (else its access
token) expires, or when the API refuses its tokens; the console restarting ends them all
(users sign in again), which is what a console without business data can afford.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

COOKIE = "nocode_console"


@dataclass
class Session:
    id: str
    username: str
    roles: tuple[str, ...]
    token: str
    token_expires_at: float
    menus: tuple[str, ...]  # menu ids from GET /menus
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = 0.0
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for next page
    refresh_token: str | None = None
    refresh_expires_at: float = 0.0
    # One renewal at a time: a refresh token is used once, a second use ends the session.
    renewing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def expires_at(self) -> float:
        return self.refresh_expires_at if self.refresh_token else self.token_expires_at

    def renewed(self, token: str, expires_at: float, refresh: str, refresh_at: float) -> None:
        self.token, self.token_expires_at = token, expires_at
        self.refresh_token, self.refresh_expires_at = refresh, refresh_at

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    def may_open(self, *menu_ids: str) -> bool:
        return any(m in self.menus for m in menu_ids)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class SessionStore:
    def __init__(self, idle_s: float, clock: Callable[[], float] = time.time) -> None:
        self._idle_s = idle_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, **fields: Any) -> Session:
        self._sweep()
        session = Session(id=secrets.token_urlsafe(32), last_seen=self._clock(), **fields)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> tuple[Session | None, bool]:
        """``(session, expired)``: the live session for a cookie value, or why there is none
        (``expired`` is true when the cookie named a session that has ended by time)."""
        if not session_id:
            return None, False
        session = self._sessions.get(session_id)
        if session is None:
            return None, True  # unknown: ended, or from before a restart
        now = self._clock()
        if now - session.last_seen > self._idle_s or now >= session.expires_at:
            del self._sessions[session_id]
            return None, True
        session.last_seen = now
        return session, False

    def alive(self, session_id: str) -> bool:
        return session_id in self._sessions

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _sweep(self) -> None:
        now = self._clock()
        for sid, s in list(self._sessions.items()):
            if now - s.last_seen > self._idle_s or now >= s.expires_at:
                del self._sessions[sid]
