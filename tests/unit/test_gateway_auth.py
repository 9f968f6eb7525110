"""The gateway's identity pieces that need no server: the menu catalogue, what a username,
password and role may be, password hashing, and the verified-token memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.authentication import VerifiedTokens
from gateway.menus import MenuCatalogue
from gateway.passwords import Passwords
from gateway.settings import GatewaySettings
from gateway.user_rules import (
    KNOWN_ROLES,
    InvalidField,
    check_password,
    check_role,
    check_roles,
    check_username,
)
from servicekit.auth import Identity, TokenIssuer, TokenVerifier, Unauthorized, generate_keypair

PRIVATE, PUBLIC = generate_keypair()
ISSUER = TokenIssuer(PRIVATE, "k1", "nocode-gateway", "nocode")

# --- the menu catalogue -------------------------------------------------------------


def test_bundled_catalogue_by_role() -> None:
    catalogue = MenuCatalogue.load(known_roles=KNOWN_ROLES)
    user = [m.id for m in catalogue.visible_to(Identity("u", frozenset({"user"})))]
    admin = [m.id for m in catalogue.visible_to(Identity("a", frozenset({"admin"})))]
    nobody = [m.id for m in catalogue.visible_to(Identity("n", frozenset()))]
    assert user == nobody == ["my-requests", "new-model-request", "new-target-request", "notices"]
    assert admin == [*user, "model-approvals", "target-approvals", "jobs", "users"]
    menu = next(m for m in catalogue if m.id == "jobs")
    assert menu.to_json() == {"id": "jobs", "title": "Jobs", "method": "GET", "path": "/cores"}


def test_catalogue_from_another_file(tmp_path: Path) -> None:
    path = tmp_path / "menus.json"
    path.write_text(
        json.dumps(
            {"menus": [{"id": "a", "title": "A", "method": "get", "path": "/a", "roles": ["*"]}]}
        )
    )
    catalogue = MenuCatalogue.load(path, KNOWN_ROLES)
    assert [m.method for m in catalogue] == ["GET"]
    settings = GatewaySettings(menus_file=path)
    assert settings.menus_file == path


GOOD = {"id": "a", "title": "A", "method": "GET", "path": "/a", "roles": ["*"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected"),
        ({"menus": [GOOD, GOOD]}, "used twice"),
        ({"menus": [{**GOOD, "roles": ["root"]}]}, "unknown roles"),
        ({"menus": [{**GOOD, "roles": []}]}, "non-empty list"),
        ({"menus": [{**GOOD, "path": "a"}]}, "must start with '/'"),
        ({"menus": [{**GOOD, "method": "BREW"}]}, "method must be"),
        ({"menus": [{**GOOD, "title": ""}]}, "title must be"),
        ({"menus": ["a"]}, "must be an object"),
    ],
)
def test_bad_catalogue_is_refused(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MenuCatalogue.parse(data, known_roles=KNOWN_ROLES)


def test_unreadable_catalogue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        MenuCatalogue.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read"):
        MenuCatalogue.load(tmp_path / "broken.json")


# --- usernames, passwords, roles ----------------------------------------------------


@pytest.mark.parametrize(
    "name", ["admin", "test", "'; DROP TABLE users;--", "Jöns Jacob", "a.b@c", "x" * 128]
)
def test_usernames_kept_verbatim(name: str) -> None:
    assert check_username(name) == name


@pytest.mark.parametrize(
    "name", ["", " padded", "padded ", "a/b", ".", "..", "nul\x00", "tab\there", "x" * 129, 7]
)
def test_unusable_usernames(name: object) -> None:
    with pytest.raises(InvalidField) as caught:
        check_username(name)
    assert caught.value.field == "username"


def test_passwords_and_roles() -> None:
    assert check_password("correct horse battery") == "correct horse battery"
    assert check_password("twelve-chars", username="bob") == "twelve-chars"
    for bad, why in (
        ("12345678", "must be at least 12 characters"),
        (" " * 8, "must be at least 12 characters"),
        (" " * 12, "must not be blank"),
        ("\t \n" * 4, "must not be blank"),
        ("a" * 12, "must not be one character repeated"),
        ("Password1234", "is one of the most common passwords"),
        ("QWERTY123456", "is one of the most common passwords"),
        ("x" * 1025, "must be at most 1024 characters"),
        (None, "must be a string"),
    ):
        with pytest.raises(InvalidField) as refused:
            check_password(bad)
        assert (refused.value.field, refused.value.message) == ("password", why)
    with pytest.raises(InvalidField, match="must not be the username"):
        check_password("Administrator-X", username="administrator-x")
    assert check_roles(["user", "admin", "user"]) == ("admin", "user")
    assert check_roles([]) == ()
    assert check_role("admin") == "admin"
    for bad_roles in (["service"], ["root"], "admin", [1]):
        with pytest.raises(InvalidField, match="roles"):
            check_roles(bad_roles)


def test_admin_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings()
    assert settings.admin_username == "admin"
    assert settings.admin_password is None
    monkeypatch.setenv("GATEWAY_ADMIN_USERNAME", "root")
    monkeypatch.setenv("GATEWAY_ADMIN_PASSWORD", "s3cret-enough")
    settings = GatewaySettings()
    assert settings.admin_username == "root"
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "s3cret-enough"
    assert "s3cret" not in repr(settings)


# --- password hashing ---------------------------------------------------------------


async def test_default_hash_is_argon2id_and_memory_hard() -> None:
    passwords = Passwords()
    hashed = await passwords.hash("correct horse")
    assert hashed.startswith("$argon2id$")
    assert "m=65536" in hashed  # 64 MiB
    assert await passwords.verify(hashed, "correct horse")
    assert not passwords.needs_rehash(hashed)


async def test_verify_never_raises() -> None:
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    hashed = await passwords.hash("pw")
    assert not await passwords.verify(hashed, "other")
    assert not await passwords.verify("not a hash", "pw")
    assert passwords.needs_rehash("not a hash")
    await passwords.verify_nobody("pw")
    # Stronger parameters today than when the hash was made: rehash on the next login.
    assert Passwords().needs_rehash(hashed)


# --- the verified-token memory ------------------------------------------------------


class CountingVerifier(TokenVerifier):
    def __init__(self) -> None:
        super().__init__({"k1": PUBLIC}, "nocode-gateway", "nocode")
        self.calls = 0

    def verify_header(self, authorization: str | None) -> Identity:
        self.calls += 1
        return super().verify_header(authorization)


def test_a_token_is_verified_once_until_it_expires() -> None:
    now = [1_000.0]
    counting = CountingVerifier()
    tokens = VerifiedTokens(counting, clock=lambda: now[0])
    header = f"Bearer {ISSUER.issue('bob', ['user'], ttl_s=60)}"
    first = tokens.verify_header(header)
    assert (first.subject, first.roles) == ("bob", frozenset({"user"}))
    assert tokens.verify_header(header) == first
    assert counting.calls == 1
    # Past its exp (by the memory's clock) the memory no longer answers: the verifier does.
    now[0] = 10**12
    tokens.verify_header(header)
    assert counting.calls == 2


def test_an_expired_token_is_refused() -> None:
    counting = CountingVerifier()
    tokens = VerifiedTokens(counting)
    header = f"Bearer {ISSUER.issue('bob', ['user'], ttl_s=-1)}"
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify_header(header)


def test_refused_tokens_are_not_remembered() -> None:
    counting = CountingVerifier()
    tokens = VerifiedTokens(counting)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            tokens.verify_header("Bearer nonsense")
        with pytest.raises(Unauthorized):
            tokens.verify_header(None)
    assert counting.calls == 4


def test_memory_is_bounded() -> None:
    counting = CountingVerifier()
    tokens = VerifiedTokens(counting, max_entries=2)
    headers = [f"Bearer {ISSUER.issue(f'u{i}', ['user'])}" for i in range(3)]
    for header in headers:
        tokens.verify_header(header)
    tokens.verify_header(headers[2])
    assert counting.calls == 3
    tokens.verify_header(headers[0])  # the oldest was dropped
    assert counting.calls == 4
