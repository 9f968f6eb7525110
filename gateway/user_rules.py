"""What a username, a password and a role may be; a value that is not is an
:class:`InvalidField`, answered 422 naming the field."""

from __future__ import annotations

import unicodedata

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


class InvalidField(ValueError):
    """A request field with an unusable value: 422 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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
