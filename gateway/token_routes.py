"""``POST /auth/token``, ``/auth/refresh`` and ``/auth/logout``: tokens and sessions.

``/auth/token`` takes a username and password (JSON or form, OAuth2's password grant) and
answers a signed bearer token and a refresh token (gateway.sessions); ``/auth/refresh``
trades a refresh token for a new pair (the old one is used up); ``/auth/logout`` ends the
session of a refresh token or of the bearer token.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from gateway.authentication import ACCESS_CHECK, TOKEN_VERIFIER
from gateway.errors import json_error, unauthorized
from gateway.identity_keys import LOGIN_USER_LIMITER, PASSWORDS, SESSIONS, TOKEN_ISSUER, USER_STORE
from gateway.parsing import only, read_fields, required_str
from gateway.rate_limit import too_many
from gateway.route_errors import answers_errors
from gateway.sessions import SessionEnded
from gateway.state import LOGGER, SETTINGS
from gateway.user_rules import USERNAME_MAX, InvalidField
from gateway.users import User, UserNotFound
from servicekit.auth import TokenIssuer, Unauthorized

BAD_CREDENTIALS = "invalid username or password"
# OAuth2 password-grant clients send scope and client_id too; they change nothing here.
TOKEN_FIELDS = ("grant_type", "username", "password", "scope", "client_id", "client_secret")
REFRESH_FIELDS = ("grant_type", "refresh_token", "scope", "client_id", "client_secret")


@answers_errors
async def token_handler(request: web.Request) -> web.StreamResponse:
    """``POST /auth/token``: a bearer token for a username and password.

    An unknown user, a wrong password and a disabled user get the same 401, after the same
    amount of work, so the answer does not tell which usernames exist.
    """
    fields = only(await read_fields(request), *TOKEN_FIELDS)
    grant_type = fields.get("grant_type")
    if grant_type is not None and grant_type != "password":
        raise InvalidField("grant_type", "only 'password' is supported")
    username = required_str(fields, "username")
    password = required_str(fields, "password")
    issuer = request.app.get(TOKEN_ISSUER)
    if issuer is None:
        return json_error(503, "token signing is not configured")

    store, passwords, log = request.app[USER_STORE], request.app[PASSWORDS], request.app[LOGGER]
    limited = _login_limited(request, username)
    if limited is not None:
        log.info("login_refused", username=username[:USERNAME_MAX], reason="rate limited")
        return limited
    could_exist = len(username) <= USERNAME_MAX and "\x00" not in username
    found = await store.credentials(username) if could_exist else None
    if found is None:
        await passwords.verify_nobody(password)
        log.info("login_refused", username=username[:USERNAME_MAX], reason="unknown user")
        return _bad_credentials()
    user, password_hash = found
    if not await passwords.verify(password_hash, password):
        log.info("login_refused", username=username, reason="wrong password")
        return _bad_credentials()
    if user.disabled:
        log.info("login_refused", username=username, reason="disabled")
        return _bad_credentials()
    if passwords.needs_rehash(password_hash):
        try:
            new_hash = await passwords.hash(password)
            await store.set_password_hash(user.username, new_hash, end_sessions=False)
        except (SQLAlchemyError, OSError, UserNotFound) as exc:  # the login stands anyway
            log.warning("rehash_failed", username=user.username, error=type(exc).__name__)

    session_id, refresh = await request.app[SESSIONS].start(user)
    log.info("login", username=user.username, roles=list(user.roles), session=session_id)
    return _tokens(request, issuer, user, session_id, refresh)


def _tokens(
    request: web.Request, issuer: TokenIssuer, user: User, session_id: str, refresh: str
) -> web.Response:
    """The token answer: the access token's fields as before, and the refresh token."""
    settings = request.app[SETTINGS]
    ttl = settings.access_token_ttl_s
    token = issuer.issue(
        user.username, user.roles, ttl, session=session_id, version=user.token_version
    )
    return web.json_response(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "refresh_expires_in": settings.refresh_token_ttl_s,
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@answers_errors
async def refresh_handler(request: web.Request) -> web.StreamResponse:
    """``POST /auth/refresh``: a new access token and refresh token for a refresh token.

    The refresh token is used up; presenting it again ends its whole session.
    """
    fields = only(await read_fields(request), *REFRESH_FIELDS)
    grant_type = fields.get("grant_type")
    if grant_type is not None and grant_type != "refresh_token":
        raise InvalidField("grant_type", "only 'refresh_token' is supported here")
    refresh = required_str(fields, "refresh_token")
    issuer = request.app.get(TOKEN_ISSUER)
    if issuer is None:
        return json_error(503, "token signing is not configured")
    log = request.app[LOGGER]
    try:
        refreshed = await request.app[SESSIONS].rotate(refresh)
    except SessionEnded as exc:
        log.info("refresh_refused", reason=str(exc), session=exc.session_id)
        if exc.session_id is not None:
            request.app[ACCESS_CHECK].forget_session(exc.session_id)
        return unauthorized(str(exc))
    log.info("refreshed", username=refreshed.user.username, session=refreshed.session_id)
    user = refreshed.user
    return _tokens(request, issuer, user, refreshed.session_id, refreshed.refresh_token)


@answers_errors
async def logout_handler(request: web.Request) -> web.StreamResponse:
    """``POST /auth/logout``: ends the session of the refresh token in the body, or of the
    bearer token; 204 (also when it had ended already), 401 when neither names one."""
    fields = only(await read_fields(request), "refresh_token")
    refresh = fields.get("refresh_token")
    if refresh is not None and not isinstance(refresh, str):
        raise InvalidField("refresh_token", "must be a string")
    store, log = request.app[SESSIONS], request.app[LOGGER]
    ended = await store.end_by_refresh(refresh) if refresh else None
    if ended is None and request.headers.get("Authorization"):
        try:
            who = request.app[TOKEN_VERIFIER].verifier.verify_header(
                request.headers["Authorization"]
            )
        except Unauthorized as exc:
            return unauthorized(str(exc))
        if who.session is not None and await store.end(who.session, who.subject):
            ended = who.session
    if ended is None:
        return unauthorized("no session to end: send refresh_token or a session's bearer token")
    request.app[ACCESS_CHECK].forget_session(ended)
    log.info("logout", session=ended)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def _login_limited(request: web.Request, username: str) -> web.Response | None:
    """A bucket per username (any username, so the answer tells nobody who exists): one
    account's password is guessed slowly however many addresses the guesses come from."""
    limiter = request.app.get(LOGIN_USER_LIMITER)
    if limiter is None:
        return None
    wait_s = limiter.acquire("login:" + username[:USERNAME_MAX].casefold())
    if wait_s <= 0:
        return None
    return too_many("username", wait_s, "too many sign-ins for this username")


def _bad_credentials() -> web.Response:
    return unauthorized(BAD_CREDENTIALS)
