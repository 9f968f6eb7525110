"""Users and their roles, in the gateway's own database.

``users`` holds each account (argon2id hash, disabled flag); ``user_roles`` the roles
granted to it. Roles come from a known set (gateway.user_rules). Usernames are kept
exactly as given (case, quotes, semicolons and all) and are unique regardless of case, so
``Admin`` cannot be created next to ``admin``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.user_rules import ADMIN, USERNAME_MAX

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("username", String(USERNAME_MAX), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Raised whenever access is taken back (disabled, a role revoked, a new password): every
    # token and session issued under an older version is refused from then on.
    Column("token_version", Integer, nullable=False, server_default=text("0")),
)
Index("ux_users_username_lower", func.lower(users.c.username), unique=True)

user_roles = Table(
    "user_roles",
    metadata,
    Column(
        "username",
        String(USERNAME_MAX),
        ForeignKey("users.username", ondelete="CASCADE", onupdate="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(64), primary_key=True),
)

# Taken in every change that could leave no enabled admin, so two of them cannot each
# believe the other admin remains.
_ADMINS_LOCK = text("SELECT pg_advisory_xact_lock(7263017401)")


class UserNotFound(LookupError):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} not found")


class UserExists(Exception):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} already exists (usernames are unique ignoring case)")


class LastAdmin(Exception):
    """The change would leave nobody able to manage users: 409."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: datetime
    updated_at: datetime
    token_version: int = 0

    @property
    def is_enabled_admin(self) -> bool:
        return ADMIN in self.roles and not self.disabled

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "roles": list(self.roles),
            "disabled": self.disabled,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


# --- the store ------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class UserStore:
    """Every read and change of users and roles; each method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, username: str) -> User | None:
        async with self.engine.connect() as conn:
            found = await self._load(conn, username)
        return found[0] if found else None

    async def credentials(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, for checking a login."""
        async with self.engine.connect() as conn:
            return await self._load(conn, username)

    async def list(self, limit: int = 100, offset: int = 0) -> list[User]:
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(users).order_by(users.c.username).limit(limit).offset(offset)
                    )
                )
                .mappings()
                .all()
            )
            roles = await self._roles(conn, [row["username"] for row in rows])
        return [_user(row, roles.get(row["username"], ())) for row in rows]

    async def create(
        self, username: str, password_hash: str, roles: Iterable[str], *, disabled: bool = False
    ) -> User:
        now = _now()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    users.insert().values(
                        username=username,
                        password_hash=password_hash,
                        disabled=disabled,
                        created_at=now,
                        updated_at=now,
                    )
                )
                granted = sorted(set(roles))
                if granted:
                    await conn.execute(
                        user_roles.insert(), [{"username": username, "role": r} for r in granted]
                    )
        except IntegrityError as exc:
            raise UserExists(username) from exc
        return User(username, tuple(granted), disabled, now, now)

    async def create_if_absent(
        self, username: str, password_hash: str, roles: Iterable[str]
    ) -> bool:
        """Create the user unless one by that name exists (left exactly as it is)."""
        now = _now()
        async with self.engine.begin() as conn:
            created = await conn.execute(
                insert(users)
                .values(
                    username=username,
                    password_hash=password_hash,
                    disabled=False,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
                .returning(users.c.username)
            )
            if created.first() is None:
                return False
            await conn.execute(
                user_roles.insert(), [{"username": username, "role": r} for r in sorted(set(roles))]
            )
        return True

    async def set_disabled(self, username: str, disabled: bool) -> User:
        async with self.engine.begin() as conn:
            user = await self._locked(conn, username, guard_admins=disabled)
            if disabled and user.is_enabled_admin:
                await self._keep_an_admin(conn, username, "disable")
            ends = {"token_version": users.c.token_version + 1} if disabled else {}
            await self._touch(conn, username, disabled=disabled, **ends)
            return await self._reload(conn, username)

    async def grant(self, username: str, role: str) -> User:
        async with self.engine.begin() as conn:
            await self._locked(conn, username)
            await conn.execute(
                insert(user_roles).values(username=username, role=role).on_conflict_do_nothing()
            )
            await self._touch(conn, username)
            return await self._reload(conn, username)

    async def revoke(self, username: str, role: str) -> User:
        async with self.engine.begin() as conn:
            user = await self._locked(conn, username, guard_admins=role == ADMIN)
            if role == ADMIN and user.is_enabled_admin:
                await self._keep_an_admin(conn, username, "revoke the admin role of")
            removed = await conn.execute(
                user_roles.delete().where(
                    (user_roles.c.username == username) & (user_roles.c.role == role)
                )
            )
            ends = {"token_version": users.c.token_version + 1} if removed.rowcount else {}
            await self._touch(conn, username, **ends)
            return await self._reload(conn, username)

    async def set_password_hash(
        self, username: str, password_hash: str, *, end_sessions: bool = True
    ) -> User:
        """A new password hash; ends the user's sessions unless it only re-hashes the same
        password (``end_sessions=False``, on login)."""
        async with self.engine.begin() as conn:
            await self._locked(conn, username)
            ends = {"token_version": users.c.token_version + 1} if end_sessions else {}
            await self._touch(conn, username, password_hash=password_hash, **ends)
            return await self._reload(conn, username)

    # --- inside a transaction ---

    async def _load(self, conn: AsyncConnection, username: str) -> tuple[User, str] | None:
        row = (
            (await conn.execute(select(users).where(users.c.username == username)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        roles = await self._roles(conn, [username])
        return _user(row, roles.get(username, ())), row["password_hash"]

    async def _reload(self, conn: AsyncConnection, username: str) -> User:
        found = await self._load(conn, username)
        if found is None:
            raise UserNotFound(username)
        return found[0]

    async def _roles(self, conn: AsyncConnection, names: list[str]) -> dict[str, tuple[str, ...]]:
        if not names:
            return {}
        rows = await conn.execute(
            select(user_roles.c.username, user_roles.c.role)
            .where(user_roles.c.username.in_(names))
            .order_by(user_roles.c.username, user_roles.c.role)
        )
        found: dict[str, list[str]] = {}
        for name, role in rows:
            found.setdefault(name, []).append(role)
        return {name: tuple(roles) for name, roles in found.items()}

    async def _locked(
        self, conn: AsyncConnection, username: str, *, guard_admins: bool = False
    ) -> User:
        if guard_admins:
            await conn.execute(_ADMINS_LOCK)
        locked = await conn.scalar(
            select(users.c.username).where(users.c.username == username).with_for_update()
        )
        if locked is None:
            raise UserNotFound(username)
        return await self._reload(conn, username)

    async def _keep_an_admin(self, conn: AsyncConnection, username: str, action: str) -> None:
        others = await conn.scalar(
            select(func.count())
            .select_from(users.join(user_roles, user_roles.c.username == users.c.username))
            .where(
                (user_roles.c.role == ADMIN)
                & users.c.disabled.is_(False)
                & (users.c.username != username)
            )
        )
        if not others:
            raise LastAdmin(f"cannot {action} {username!r}: they are the last enabled admin")

    async def _touch(self, conn: AsyncConnection, username: str, **values: object) -> None:
        await conn.execute(
            users.update().where(users.c.username == username).values(updated_at=_now(), **values)
        )


def _user(row: object, roles: tuple[str, ...]) -> User:
    data = dict(row)  # type: ignore[call-overload]
    return User(
        username=data["username"],
        roles=roles,
        disabled=data["disabled"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        token_version=data.get("token_version", 0),
    )
