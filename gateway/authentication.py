"""Who is calling: the bearer token every gateway route needs, bar a few public ones.

:func:`authenticate` runs inside the identity middleware (``gateway.middlewares``). A
request whose matched handler is not public must carry ``Authorization: Bearer <token>``
that ``servicekit.auth.TokenVerifier`` accepts (Ed25519 only, known ``kid``, ``exp``,
``iss``, ``aud``); otherwise the answer is 401 ``{"detail": "unauthorized: ...; get a
token with POST /auth/token (...)"}`` with ``WWW-Authenticate: Bearer``. The verified
:class:`~servicekit.auth.Identity` is put on the request at ``request["identity"]`` for
the handlers and middlewares inside (rate limiting, menus, the admin API). The
Authorization header itself travels on upstream unchanged: each service verifies the
token again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from aiohttp import web

from gateway.clients import client_address
from gateway.errors import unauthorized, user_database_unavailable
from gateway.rate_limit import RATE_LIMITER, too_many
from gateway.sessions import AccessCheck
from gateway.state import IDENTITY
from servicekit.auth import SERVICE, Identity, TokenVerifier, Unauthorized

"""Request key of the caller's verified :class:`~servicekit.auth.Identity`."""


class VerifiedTokens:
    """A :class:`TokenVerifier` that remembers the tokens it has accepted until they expire.

    Checking an Ed25519 signature costs about 0.2 ms of CPU, more than the rest of the
    gateway's work on a request; a client sends the same token on every call, so each token
    is verified once. Only fully verified tokens are remembered, each only until its
    ``exp``, and at most ``max_entries`` of them (oldest dropped first). Keys come from
    settings, so a key removed from ``JWT_PUBLIC_KEYS`` takes effect with the restart that
    loads the new settings, which also empties this memory.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self._max_entries = max_entries
        self._clock = clock
        self._accepted: dict[str, tuple[Identity, float]] = {}

    def verify_header(self, authorization: str | None) -> Identity:
        if authorization is not None:
            hit = self._accepted.get(authorization)
            if hit is not None:
                if self._clock() < hit[1]:
                    return hit[0]
                del self._accepted[authorization]
        identity = self.verifier.verify_header(authorization)
        assert authorization is not None  # verify_header refuses a missing header
        self._remember(authorization, identity)
        return identity

    def _remember(self, authorization: str, identity: Identity) -> None:
        token = authorization.partition(" ")[2].strip()
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        if not isinstance(expires, int | float):
            return
        while len(self._accepted) >= self._max_entries:
            del self._accepted[next(iter(self._accepted))]
        self._accepted[authorization] = (identity, float(expires))


TOKEN_VERIFIER = web.AppKey("gateway.token_verifier", VerifiedTokens)
ACCESS_CHECK = web.AppKey("gateway.access_check", AccessCheck)
"""The check of each token against the user store (gateway.sessions); set while the user
database is open."""
PUBLIC_HANDLERS = web.AppKey("gateway.public_handlers", frozenset)
"""The handlers that answer without a token (token endpoint, health, metrics)."""


TOKEN_HINT = "get a token with POST /auth/token (form fields username and password)"
"""Ends every 401 for a missing or refused bearer token: how a newcomer gets one."""


def caller(request: web.Request) -> Identity:
    """The verified identity of a request that passed :func:`authenticate`."""
    return request[IDENTITY]


async def authenticate(request: web.Request) -> web.Response | None:
    """Establish the caller of ``request``; the 401 to answer instead when there is none.

    A valid signature is not enough: the token's user must still have the access it
    claims (gateway.sessions.AccessCheck), and a token for the platform's own calls (role
    ``service``) is never accepted from outside.
    """
    if request.match_info.handler in request.app[PUBLIC_HANDLERS]:
        return None
    try:
        identity = request.app[TOKEN_VERIFIER].verify_header(request.headers.get("Authorization"))
    except Unauthorized as exc:
        return refuse(request, str(exc))
    if SERVICE in identity.roles:
        return refuse(request, "service tokens are not accepted here")
    check = request.app.get(ACCESS_CHECK)
    if check is None:
        return user_database_unavailable()
    refused = await check.refusal(identity)
    if refused is not None:
        return refuse(request, refused)
    request[IDENTITY] = identity
    return None


def refuse(request: web.Request, reason: str) -> web.Response:
    """The 401 for a request without a valid token, which draws from its client address's
    bucket like any other request (429 once that is empty): guessing tokens is limited too."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None:
        wait_s = limiter.acquire("addr:" + client_address(request))
        if wait_s > 0:
            return too_many("address", wait_s, "too many requests without a valid token")
    return unauthorized(f"{reason}; {TOKEN_HINT}")
