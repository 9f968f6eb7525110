"""Keys with one job each (issue 12, item 7): core's service key signs only service tokens
for the internal audience, the users' key nothing for that audience, and no token may
live for ages whoever signed it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from nocode.keys import LOCAL_SERVICE_KEY_ID, local_identity_env
from servicekit.auth import SERVICE, TokenIssuer, TokenVerifier, Unauthorized, generate_keypair
from servicekit.settings import ServiceSettings

USERS_PRIVATE, USERS_PUBLIC = generate_keypair()
CORE_PRIVATE, CORE_PUBLIC = generate_keypair()
ISS, AUD, INTERNAL = "nocode-gateway", "nocode", "nocode-internal"

VERIFIER = TokenVerifier(
    {"users": USERS_PUBLIC, "core": CORE_PUBLIC},
    ISS,
    AUD,
    service_keys=frozenset({"core"}),
    service_audience=INTERNAL,
)
CORE = TokenIssuer(CORE_PRIVATE, "core", ISS, INTERNAL)


def test_core_s_key_signs_service_tokens_for_the_internal_audience() -> None:
    identity = VERIFIER.verify(CORE.issue("service:core", [SERVICE], ttl_s=60))
    assert (identity.subject, identity.roles) == ("service:core", frozenset({SERVICE}))


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (
            lambda: CORE.issue("mallory", ["admin"]),
            "invalid token: a service key signs only the role 'service'",
        ),
        (
            lambda: CORE.issue("service:core", [SERVICE, "admin"]),
            "invalid token: a service key signs only the role 'service'",
        ),
        (
            lambda: TokenIssuer(CORE_PRIVATE, "core", ISS, AUD).issue("mallory", [SERVICE]),
            "invalid token: Audience doesn't match",
        ),
        (
            lambda: TokenIssuer(USERS_PRIVATE, "users", ISS, INTERNAL).issue("x", [SERVICE]),
            "invalid token: Audience doesn't match",
        ),
    ],
    ids=[
        "service key, admin",
        "service key, extra role",
        "service key, users' aud",
        "users' key, internal aud",
    ],
)
def test_a_key_does_only_its_own_job(token, why: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized) as refused:
        VERIFIER.verify(token())
    assert str(refused.value) == why


def test_a_token_may_not_live_for_a_century() -> None:
    now = int(time.time())
    claims = {"sub": "admin", "roles": ["admin"], "iss": ISS, "aud": AUD}
    signer = TokenIssuer(USERS_PRIVATE, "users", ISS, AUD)
    century = jwt.encode(
        claims | {"iat": now, "exp": now + 100 * 365 * 86400},
        signer.key,
        "EdDSA",
        headers={"kid": "users"},
    )
    with pytest.raises(Unauthorized, match="it may live at most 86400 s"):
        VERIFIER.verify(century)
    day = jwt.encode(
        claims | {"iat": now, "exp": now + 86400}, signer.key, "EdDSA", headers={"kid": "users"}
    )
    assert VERIFIER.verify(day).subject == "admin"


def test_settings_give_core_its_own_signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = local_identity_env(tmp_path)
    assert set(json.loads(env["JWT_PUBLIC_KEYS"])) == {"local", LOCAL_SERVICE_KEY_ID}
    assert json.loads(env["JWT_SERVICE_KEY_IDS"]) == [LOCAL_SERVICE_KEY_ID]
    assert env["SERVICE_JWT_PRIVATE_KEY"] != env["JWT_PRIVATE_KEY"]
    assert (tmp_path / "keys" / "jwt-service-ed25519.pem").stat().st_mode & 0o777 == 0o600
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ServiceSettings()
    signer = settings.service_token_issuer()
    assert signer is not None and (signer.key_id, signer.audience) == (
        LOCAL_SERVICE_KEY_ID,
        INTERNAL,
    )
    verifier = settings.token_verifier()
    assert verifier.verify(signer.issue("service:core", [SERVICE], ttl_s=60)).roles == {SERVICE}
    with pytest.raises(Unauthorized):
        verifier.verify(signer.issue("mallory", ["admin"]))
