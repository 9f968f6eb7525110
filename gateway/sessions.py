"""Sessions that end when access ends.

A login starts a session: a short access token (``GATEWAY_ACCESS_TOKEN_TTL_S``, at most
15 minutes) naming the session (``sid``) and the user's token version (``ver``), and a
refresh token, stored only as its SHA-256. ``POST /auth/refresh`` trades a refresh token
for a new pair and marks the old one used; presenting a used one again means it was
copied, so the whole session (the token's family) ends. ``POST /auth/logout`` ends one.

Disabling a user, revoking a role or setting a password raises the user's token version
(gateway.users): every session and access token of an older version is refused at once.
:class:`AccessCheck` makes that check on every request, from the user store, remembering
an answer for at most ``GATEWAY_ACCESS_CHECK_CACHE_S`` seconds (forgotten at once for a
user this gateway changes itself).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.users import USERNAME_MAX, User, UserStore, metadata, user_roles, users
from servicekit.auth import Identity
from servicekit.db import DATABASE_ERRORS

log = structlog.get_logger("gateway.sessions")

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column(
        "username",
        String(USERNAME_MAX),
        ForeignKey("users.username", ondelete="CASCADE", onupdate="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("token_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_why", String(64)),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", String(64), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)


class SessionEnded(Exception):
    """A refresh token, or an access token's session, that no longer gives access: 401."""

    def __init__(self, why: str, session_id: str | None = None) -> None:
        super().__init__(why)
        self.session_id = session_id


def _now() -> datetime:
    return datetime.now(UTC)


def token_hash(refresh_token: str) -> str:
    """Refresh tokens are 256 random bits: a plain SHA-256 keeps them unguessable at rest."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Refreshed:
    user: User
    session_id: str
    refresh_token: str


class SessionStore:
    """Sessions and refresh tokens in the gateway's database; each method one transaction."""

    def __init__(self, engine: AsyncEngine, users_store: UserStore, refresh_ttl_s: int) -> None:
        self.engine = engine
        self.users = users_store
        self.refresh_ttl = timedelta(seconds=refresh_ttl_s)

    async def start(self, user: User) -> tuple[str, str]:
        """A new session for ``user`` at its current token version: (session id, refresh)."""
        session_id, now = secrets.token_urlsafe(16), _now()
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    id=session_id,
                    username=user.username,
                    token_version=user.token_version,
                    created_at=now,
                )
            )
            refresh = await self._new_refresh(conn, session_id, now)
            # Tidy as sign-ins come: refresh tokens long past their expiry can do nothing.
            await conn.execute(
                refresh_tokens.delete().where(refresh_tokens.c.expires_at < now - self.refresh_ttl)
            )
        return session_id, refresh

    async def rotate(self, refresh_token: str) -> Refreshed:
        """Trade a refresh token for a new one of the same session.

        Raises :class:`SessionEnded` for an unknown, expired or used token (a used one also
        ends its session), an ended session, or a user who lost access since.
        """
        now = _now()
        async with self.engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        select(refresh_tokens, sessions)
                        .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
                        .where(refresh_tokens.c.token_hash == token_hash(refresh_token))
                        .with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise SessionEnded("unknown refresh token")
            if row["revoked_at"] is not None:
                raise SessionEnded("the session has ended")
            if row["expires_at"] <= now:
                raise SessionEnded("refresh token expired")
            found = await self.users._load(conn, row["username"])
            user = found[0] if found else None
            # Refused below, once the session's end is committed.
            if row["used_at"] is not None:
                refused = "refresh token reused: the session has ended"
            elif user is None or user.disabled or user.token_version != row["token_version"]:
                refused = "the user's access has changed: sign in again"
            else:
                refused = None
            if refused is not None:
                await self._revoke(conn, row["session_id"], refused[:64], now)
            else:
                await conn.execute(
                    refresh_tokens.update()
                    .where(refresh_tokens.c.token_hash == row["token_hash"])
                    .values(used_at=now)
                )
                refresh = await self._new_refresh(conn, row["session_id"], now)
        if refused is not None or user is None:
            raise SessionEnded(str(refused), row["session_id"])
        return Refreshed(user, row["session_id"], refresh)

    async def end_by_refresh(self, refresh_token: str) -> str | None:
        """End the session of a refresh token (used or not); its id, None if unknown."""
        async with self.engine.begin() as conn:
            session_id = await conn.scalar(
                select(refresh_tokens.c.session_id).where(
                    refresh_tokens.c.token_hash == token_hash(refresh_token)
                )
            )
            if session_id is not None:
                await self._revoke(conn, session_id, "logout", _now())
            return session_id

    async def end(self, session_id: str, username: str) -> bool:
        async with self.engine.begin() as conn:
            owner = await conn.scalar(
                select(sessions.c.username).where(sessions.c.id == session_id)
            )
            if owner != username:
                return False
            await self._revoke(conn, session_id, "logout", _now())
            return True

    async def access(self, username: str, session_id: str | None) -> Access:
        """What the per-request check needs: the user (None if gone) and the session's end."""
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(users.c.disabled, users.c.token_version).where(
                            users.c.username == username
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return Access(exists=False)
            roles = await conn.scalars(
                select(user_roles.c.role).where(user_roles.c.username == username)
            )
            ended = False
            if session_id is not None:
                revoked = await conn.execute(
                    select(sessions.c.revoked_at).where(
                        (sessions.c.id == session_id) & (sessions.c.username == username)
                    )
                )
                found = revoked.first()
                ended = found is None or found[0] is not None
        return Access(True, row["disabled"], row["token_version"], frozenset(roles), ended)

    async def _new_refresh(self, conn: AsyncConnection, session_id: str, now: datetime) -> str:
        refresh = secrets.token_urlsafe(32)
        await conn.execute(
            refresh_tokens.insert().values(
                token_hash=token_hash(refresh),
                session_id=session_id,
                created_at=now,
                expires_at=now + self.refresh_ttl,
            )
        )
        return refresh

    async def _revoke(
        self, conn: AsyncConnection, session_id: str, why: str, now: datetime
    ) -> None:
        await conn.execute(
            sessions.update()
            .where((sessions.c.id == session_id) & sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_why=why)
        )


@dataclass(frozen=True, slots=True)
class Access:
    exists: bool
    disabled: bool = False
    token_version: int = 0
    roles: frozenset[str] = frozenset()
    session_ended: bool = False

    def refusal(self, who: Identity) -> str | None:
        """Why ``who``'s token no longer gives access; None when it does.

        A token from /auth/token (it carries ``ver``) needs its user, version and session
        unchanged. A token signed elsewhere with the gateway's key (``nocode token``, a
        script) has no session: it is refused for a user who is disabled or lacks a role it
        claims, and stands for a subject that is no user of the store.
        """
        if not self.exists:
            return "the user no longer exists" if who.version is not None else None
        if self.disabled:
            return "the user is disabled"
        if who.version is not None and who.version != self.token_version:
            return "the user's access has changed: sign in again"
        if self.session_ended:
            return "the session has ended"
        if not who.roles <= self.roles:
            return "the token claims roles the user does not have"
        return None


class AccessCheck:
    """The per-request check, each user's answer remembered for at most ``ttl_s``."""

    def __init__(
        self,
        store: SessionStore,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._known: dict[tuple[str, str | None], tuple[Access, float]] = {}

    async def refusal(self, who: Identity) -> str | None:
        """Why ``who`` may not pass (None: it may).

        With the user database down nobody can take access back, so the last answer
        known for the user stands, however old; a user with none passes on the token's
        signature alone (the admin API, which reads the store, answers 503 meanwhile).
        """
        key = (who.subject, who.session)
        hit = self._known.get(key)
        now = self._clock()
        if hit is not None and now - hit[1] < self.ttl_s:
            return hit[0].refusal(who)
        try:
            access = await self.store.access(who.subject, who.session)
        except DATABASE_ERRORS as exc:
            log.warning("access_check_unavailable", error=type(exc).__name__)
            return hit[0].refusal(who) if hit is not None else None
        self._known.pop(key, None)
        while len(self._known) >= self._max_entries:
            del self._known[next(iter(self._known))]
        self._known[key] = (access, now)
        return access.refusal(who)

    def forget(self, username: str) -> None:
        """This gateway changed ``username``: ask the store again on the next request."""
        for key in [k for k in self._known if k[0] == username]:
            del self._known[key]

    def forget_session(self, session_id: str) -> None:
        """This gateway ended a session: its tokens are checked afresh from now on."""
        for key in [k for k in self._known if k[1] == session_id]:
            del self._known[key]
