"""Identity: signed JWTs the gateway issues and every service verifies for itself.

Tokens are signed with Ed25519 (``EdDSA``) and verification accepts that algorithm
only, so ``alg: none`` and HMAC-with-the-public-key tokens are refused. Every token
must carry ``sub``, ``roles``, ``exp``, ``iat``, ``iss`` and ``aud``; the key is
picked by the header's ``kid`` from ``JWT_PUBLIC_KEYS``, so keys rotate by adding a
new kid, moving the signer to it, then dropping the old one.

Client-sent identity headers are never read: a service trusts only a token it has
verified itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request

ALGORITHM = "EdDSA"
ADMIN = "admin"
SERVICE = "service"  # other services' own calls (core's compensation check)
REQUIRED_CLAIMS = ["sub", "roles", "exp", "iat", "iss", "aud"]


class Unauthorized(Exception):
    """No valid token: 401."""


class Forbidden(Exception):
    """A valid token that does not allow this: 403."""


@dataclass(frozen=True)
class Identity:
    subject: str
    roles: frozenset[str]
    # A token from the gateway's /auth/token carries its session (``sid``) and the user's
    # token version (``ver``) then; the gateway checks both against its user store.
    session: str | None = None
    version: int | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def sees_all(self) -> bool:
        """Admins and services see every user's requests; users see their own."""
        return self.is_admin or SERVICE in self.roles

    def may_see(self, owner: str | None) -> bool:
        return self.sees_all or (owner is not None and owner == self.subject)


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as PEM strings (private, public)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


class TokenIssuer:
    def __init__(
        self, private_key_pem: str, key_id: str, issuer: str, audience: str, ttl_s: int = 3600
    ) -> None:
        self.key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(self.key, Ed25519PrivateKey):
            raise ValueError("JWT_PRIVATE_KEY must be an Ed25519 private key (PEM)")
        self.key_id = key_id
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(
        self,
        subject: str,
        roles: list[str] | tuple[str, ...],
        ttl_s: int | None = None,
        *,
        session: str | None = None,
        version: int | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": subject,
            "roles": sorted(set(roles)),
            "iat": now,
            "exp": now + (ttl_s or self.ttl_s),
            "iss": self.issuer,
            "aud": self.audience,
        }
        if session is not None:
            claims["sid"] = session
        if version is not None:
            claims["ver"] = version
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.key_id})


MAX_TOKEN_LIFETIME_S = 24 * 3600
"""The longest a token may live (``exp`` - ``iat``, and ``exp`` - now): a token signed to
last a century is refused, whoever signed it."""


VERIFIED_CACHE_SIZE = 4096
"""Tokens a verifier remembers as verified (least recently used go first)."""


class TokenVerifier:
    def __init__(
        self,
        public_keys: dict[str, str],
        issuer: str,
        audience: str,
        max_lifetime_s: int = MAX_TOKEN_LIFETIME_S,
        *,
        service_keys: frozenset[str] = frozenset(),
        service_audience: str = "nocode-internal",
    ) -> None:
        self.keys = {
            kid: serialization.load_pem_public_key(pem.encode()) for kid, pem in public_keys.items()
        }
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime_s = max_lifetime_s
        # Keys with one job: a service key (core's) signs only role ``service`` for the
        # internal audience; tokens for that audience need a service key.
        self.service_keys = frozenset(service_keys)
        self.service_audience = service_audience
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    def verify(self, token: str) -> Identity:
        """The token's identity, if its signature and claims hold. A token verified before
        is answered from a bounded cache until its ``exp`` (a client sends one token many
        times; the signature check is most of what verifying costs)."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            self._verified.move_to_end(token)
            return known[0]
        identity, expires = self._verify(token)
        self._verified[token] = (identity, expires)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    def _verify(self, token: str) -> tuple[Identity, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from exc
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized("token signed with an unknown key")
        service_key = kid in self.service_keys
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.service_audience if service_key else self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        roles = claims["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthorized("invalid token: roles must be a list of strings")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise Unauthorized("invalid token: sub must be a non-empty string")
        self._check_lifetime(claims["iat"], claims["exp"])
        if service_key and roles != [SERVICE]:
            raise Unauthorized("invalid token: a service key signs only the role 'service'")
        session, version = claims.get("sid"), claims.get("ver")
        if session is not None and not isinstance(session, str):
            raise Unauthorized("invalid token: sid must be a string")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise Unauthorized("invalid token: ver must be an integer")
        return Identity(claims["sub"], frozenset(roles), session, version), claims["exp"]

    def _check_lifetime(self, issued: object, expires: object) -> None:
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires)
        ):
            raise Unauthorized("invalid token: iat and exp must be numbers")
        longest = self.max_lifetime_s
        if expires - issued > longest or expires - time.time() > longest:  # type: ignore[operator]
            raise Unauthorized(f"invalid token: it may live at most {longest} s")

    def verify_header(self, authorization: str | None) -> Identity:
        """Verify an ``Authorization: Bearer <token>`` header value."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        return self.verify(token.strip())


async def caller(request: Request) -> Identity:
    """FastAPI dependency: the verified identity of the request's bearer token. Async (though
    it awaits nothing) so FastAPI runs it on the event loop, not in its thread pool."""
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier.verify_header(request.headers.get("authorization"))


Caller = Annotated[Identity, Depends(caller)]


# What a service's routes ask of the caller.


def require_admin(who: Identity, action: str) -> None:
    if not who.is_admin:
        raise Forbidden(f"only an admin may {action}")


def acting_for(who: Identity, user_id: str) -> str:
    """The user a new request is made for: the caller, or anyone when an admin asks."""
    if user_id != who.subject and not who.sees_all:
        raise Forbidden(f"you are {who.subject!r}: you may not make a request for {user_id!r}")
    return user_id


def listing_for(who: Identity, user_id: str | None) -> str | None:
    """Whose requests a listing shows: a user's own; an admin's choice (all without one)."""
    if who.sees_all:
        return user_id
    if user_id is not None and user_id != who.subject:
        raise Forbidden(f"you are {who.subject!r}: you may list only your own requests")
    return who.subject
