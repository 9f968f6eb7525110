"""Token verification: only well-formed, unexpired EdDSA tokens of a known key, for us."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from servicekit.auth import (
    Forbidden,
    Identity,
    TokenIssuer,
    TokenVerifier,
    Unauthorized,
    acting_for,
    generate_keypair,
    listing_for,
    require_admin,
)

PRIVATE, PUBLIC = generate_keypair()
OTHER_PRIVATE, _ = generate_keypair()
ISSUER = TokenIssuer(PRIVATE, "k1", "nocode-gateway", "nocode")
VERIFIER = TokenVerifier({"k1": PUBLIC}, "nocode-gateway", "nocode")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base = {
        "sub": "test",
        "roles": ["user"],
        "iat": now,
        "exp": now + 86_400,  # tokens are made at collection time, long before some tests run
        "iss": "nocode-gateway",
        "aud": "nocode",
    }
    return {k: v for k, v in (base | overrides).items() if v is not None}


def signed(payload: dict[str, object], key: str = PRIVATE, kid: str = "k1") -> str:
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def test_a_token_the_gateway_issued_verifies() -> None:
    who = VERIFIER.verify(ISSUER.issue("test", ["user"]))
    assert who == Identity("test", frozenset({"user"}))
    assert not who.is_admin and who.may_see("test") and not who.may_see("other")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (signed(claims(exp=int(time.time()) - 5)), "token expired"),
        (signed(claims(aud="someone-else")), "invalid token: Audience doesn't match"),
        (signed(claims(iss="evil")), "invalid token: Invalid issuer"),
        (signed(claims(exp=None)), 'invalid token: Token is missing the "exp" claim'),
        (signed(claims(roles=None)), 'invalid token: Token is missing the "roles" claim'),
        (signed(claims(roles="admin")), "invalid token: roles must be a list of strings"),
        (signed(claims(), key=OTHER_PRIVATE), "invalid token: Signature verification failed"),
        (signed(claims(), kid="k2"), "token signed with an unknown key"),
        ("not.a.token", "malformed token"),
    ],
)
def test_bad_tokens_are_refused_saying_why(token: str, why: str) -> None:
    with pytest.raises(Unauthorized, match=why):
        VERIFIER.verify(token)


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = ISSUER.issue("test", ["user"]).split(".")
    forged = b64(json.dumps(claims(roles=["admin"])).encode())
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        VERIFIER.verify(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused() -> None:
    header = b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims(roles=['admin'])).encode())}."
    with pytest.raises(Unauthorized, match="not allowed"):
        VERIFIER.verify(token)


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """The HMAC/asymmetric confusion: the public key is no secret, so such a token
    must never verify."""
    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims(roles=["admin"])).encode())
    mac = hmac.new(PUBLIC.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized, match="not allowed"):
        VERIFIER.verify(f"{header}.{body}.{b64(mac)}")


def test_keys_rotate_by_key_id() -> None:
    new_private, new_public = generate_keypair()
    both = TokenVerifier({"k1": PUBLIC, "k2": new_public}, "nocode-gateway", "nocode")
    new = TokenIssuer(new_private, "k2", "nocode-gateway", "nocode").issue("test", ["user"])
    old = ISSUER.issue("test", ["user"])
    assert both.verify(new).subject == both.verify(old).subject == "test"
    after = TokenVerifier({"k2": new_public}, "nocode-gateway", "nocode")
    with pytest.raises(Unauthorized, match="unknown key"):
        after.verify(old)


def test_missing_or_wrong_scheme_header_is_refused() -> None:
    for header in (None, "", "Basic dGVzdDp0ZXN0", "Bearer "):
        with pytest.raises(Unauthorized, match="missing bearer token"):
            VERIFIER.verify_header(header)


def test_what_users_and_admins_may_do() -> None:
    user, admin = Identity("test", frozenset({"user"})), Identity("root", frozenset({"admin"}))
    with pytest.raises(Forbidden, match="only an admin may approve"):
        require_admin(user, "approve a model request")
    require_admin(admin, "approve a model request")
    assert acting_for(user, "test") == "test" and acting_for(admin, "test") == "test"
    with pytest.raises(Forbidden, match="may not make a request for 'other'"):
        acting_for(user, "other")
    assert listing_for(user, None) == "test" and listing_for(admin, None) is None
    with pytest.raises(Forbidden, match="only your own"):
        listing_for(user, "other")


def test_a_token_verified_once_is_remembered_only_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier({"k1": PUBLIC}, "nocode-gateway", "nocode")
    token = ISSUER.issue("test", ["user"], ttl_s=60)
    assert verifier.verify(token) == Identity("test", frozenset({"user"}))
    checks: list[str] = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: checks.append("decode"))
    assert verifier.verify(token).subject == "test"  # from the cache: no signature check
    assert checks == []
    monkeypatch.undo()

    def expired(*args: object, **kwargs: object) -> None:
        checks.append("decode")
        raise jwt.ExpiredSignatureError("Signature has expired")

    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt, "decode", expired)
    with pytest.raises(Unauthorized, match="token expired"):  # past exp: verified afresh
        verifier.verify(token)
    assert checks == ["decode"]
