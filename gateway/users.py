"""Users and their roles, in the gateway's own database.

``users`` holds each account (argon2id hash, disabled flag); ``user_roles`` the roles
granted to it. Roles come from a known set, :data:`KNOWN_ROLES`. Usernames are kept
exactly as given (case, quotes, semicolons and all) and are unique regardless of case, so
``Admin`` cannot be created next to ``admin``.
"""

from __future__ import annotations

import unicodedata
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

from servicekit.auth import ADMIN

USER = "user"
KNOWN_ROLES: tuple[str, ...] = (ADMIN, USER)
"""Roles a user may hold. ``service`` (servicekit.auth) is for the platform's own calls and
is never granted to a user."""
DEFAULT_ROLES: tuple[str, ...] = (USER,)

USERNAME_MAX = 128
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
# The worst of the passwords long enough to pass PASSWORD_MIN, from the published lists of
# leaked passwords (compared ignoring case). A short list on purpose: length does the rest.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123123123123",
        "123456123456",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "qwertyuiopas",
        "qwerty123456",
        "qwertyuiop123",
        "qwerty12345678",
        "asdfghjkl123",
        "zaq12wsxcde3",
        "password1234",
        "password12345",
        "password123!",
        "passwordpassword",
        "password1234567",
        "p@ssw0rd1234",
        "iloveyou1234",
        "letmein12345",
        "welcome12345",
        "welcome@1234",
        "changeme1234",
        "administrator",
        "administrator1",
        "adminadmin123",
        "admin1234567",
        "admin12345678",
        "adminpassword",
        "abcdefghijkl",
        "abcd1234abcd",
        "abc123abc123",
        "football1234",
        "baseball1234",
        "sunshine1234",
        "princess1234",
        "monkey123456",
        "dragon123456",
        "trustno1trustno1",
        "superman1234",
        "starwars1234",
    }
)

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


class InvalidField(ValueError):
    """A request field with an unusable value: 422 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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


# --- what a username, a password and a role may be ----------------------------------


def check_username(value: object, field: str = "username") -> str:
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    if not value:
        raise InvalidField(field, "must not be empty")
    if len(value) > USERNAME_MAX:
        raise InvalidField(field, f"must be at most {USERNAME_MAX} characters")
    if value != value.strip():
        raise InvalidField(field, "must not start or end with whitespace")
    if "/" in value or value in (".", ".."):
        raise InvalidField(field, "must not contain '/' or be '.' or '..'")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in value):
        raise InvalidField(field, "must not contain control or unassigned characters")
    return value


def check_password(value: object, field: str = "password", username: str | None = None) -> str:
    """The password policy: 12 to 1024 characters, not blank, not one character repeated,
    not the username, not one of the most common passwords."""
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    if len(value) < PASSWORD_MIN:
        raise InvalidField(field, f"must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise InvalidField(field, f"must be at most {PASSWORD_MAX} characters")
    if not value.strip():
        raise InvalidField(field, "must not be blank")
    if len(set(value)) == 1:
        raise InvalidField(field, "must not be one character repeated")
    folded = value.casefold()
    if username is not None and folded.strip() == username.casefold():
        raise InvalidField(field, "must not be the username")
    if folded in COMMON_PASSWORDS:
        raise InvalidField(field, "is one of the most common passwords")
    return value


def check_role(value: object, field: str = "role") -> str:
    if not isinstance(value, str) or value not in KNOWN_ROLES:
        raise InvalidField(field, f"unknown role {value!r}; known roles: {', '.join(KNOWN_ROLES)}")
    return value


def check_roles(value: object, field: str = "roles") -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidField(field, "must be a list of roles")
    return tuple(sorted({check_role(role, field) for role in value}))


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
