"""The gateway's own identity endpoints: tokens, menus and the admin API for users.

``POST /auth/token``  username + password (JSON or form) -> a signed bearer token and a
                      refresh token (gateway.sessions)
``POST /auth/refresh`` a refresh token -> a new pair; the old one is used up
``POST /auth/logout``  ends the session of a refresh token or of the bearer token
``GET  /menus``       the menus the caller's roles may see
``/users/**``         admins manage users and their roles (403 for anyone else)

:func:`add_identity` wires all of it into the app: the token verifier the identity
middleware uses, the signer, the menu catalogue, the user database (opened, and the first
admin seeded, when the app starts) and the routes.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from sqlalchemy.exc import SQLAlchemyError

from gateway.authentication import (
    ACCESS_CHECK,
    IDENTITY,
    PUBLIC_HANDLERS,
    TOKEN_VERIFIER,
    VerifiedTokens,
    unauthorized,
)
from gateway.errors import json_error
from gateway.health import live_handler, ready_handler
from gateway.menus import MenuCatalogue
from gateway.metrics import metrics_handler
from gateway.parsing import MAX_OFFSET, is_form, only, read_fields
from gateway.passwords import Passwords
from gateway.rate_limit import RateLimiter, too_many
from gateway.sessions import AccessCheck, SessionEnded, SessionStore
from gateway.state import LOGGER, REQUEST_CONTEXT, SETTINGS, TRACING
from gateway.users import (
    ADMIN,
    DEFAULT_ROLES,
    KNOWN_ROLES,
    USER,
    USERNAME_MAX,
    InvalidField,
    LastAdmin,
    User,
    UserExists,
    UserNotFound,
    UserStore,
    check_password,
    check_role,
    check_roles,
    check_username,
)
from servicekit.auth import Forbidden, Identity, TokenIssuer, Unauthorized
from servicekit.db import DATABASE_ERRORS, DB_RETRY_AFTER_S, make_engine

USER_STORE = web.AppKey("gateway.user_store", UserStore)
PASSWORDS = web.AppKey("gateway.passwords", Passwords)
TOKEN_ISSUER = web.AppKey("gateway.token_issuer", TokenIssuer)
MENUS = web.AppKey("gateway.menus", MenuCatalogue)
SESSIONS = web.AppKey("gateway.sessions", SessionStore)
LOGIN_USER_LIMITER = web.AppKey("gateway.login_user_limiter", RateLimiter)

BAD_CREDENTIALS = "invalid username or password"
# OAuth2 password-grant clients send scope and client_id too; they change nothing here.
TOKEN_FIELDS = ("grant_type", "username", "password", "scope", "client_id", "client_secret")
REFRESH_FIELDS = ("grant_type", "refresh_token", "scope", "client_id", "client_secret")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- answering errors as JSON -------------------------------------------------------


def invalid(field: str, message: str) -> web.Response:
    """422 in the services' shape: a summary naming the field, and the list of errors."""
    return web.json_response(
        {
            "detail": f"invalid request: {field}: {message}",
            "errors": [{"field": field, "message": message}],
        },
        status=422,
    )


def answers_errors(handler: Handler) -> Handler:
    """Labels the request for metrics and turns the identity domain's exceptions into their
    JSON answers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is not None:  # the metrics label: the path template, e.g. /users/{username}
            request[REQUEST_CONTEXT].route = resource.canonical
        try:
            return await handler(request)
        except InvalidField as exc:
            return invalid(exc.field, exc.message)
        except Forbidden as exc:
            return json_error(403, f"forbidden: {exc}")
        except UserNotFound as exc:
            return json_error(404, str(exc))
        except (UserExists, LastAdmin) as exc:
            return json_error(409, str(exc))
        except DATABASE_ERRORS as exc:
            # Database down, or not migrated: say so without SQL, addresses or traces.
            request.app[LOGGER].warning(
                "user_database_error", path=request.path, error=type(exc).__name__
            )
            retry = {"Retry-After": str(DB_RETRY_AFTER_S)}
            return json_error(503, "user database unavailable", headers=retry)

    return wrapped


# --- reading requests ---------------------------------------------------------------


def required(fields: dict[str, Any], name: str) -> Any:
    value = fields.get(name)
    if value is None or value == "":
        raise InvalidField(name, "field required")
    return value


def required_str(fields: dict[str, Any], name: str) -> str:
    value = required(fields, name)
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    return value


def path_username(request: web.Request) -> str:
    """The ``{username}`` of the path; one that no user could have is simply not found."""
    username = request.match_info["username"]
    if len(username) > USERNAME_MAX or "\x00" in username:
        raise UserNotFound(username)
    return username


def caller(request: web.Request) -> Identity:
    return request[IDENTITY]


async def require_admin(request: web.Request) -> Identity:
    """The caller, if the user store (not the token) says they are an enabled admin."""
    who = caller(request)
    user = await request.app[USER_STORE].get(who.subject)
    if user is None or not user.is_enabled_admin:
        raise Forbidden("only an admin may manage users")
    return who


def user_changed(request: web.Request, user: User) -> web.Response:
    """The answer to an admin's change of ``user``, whose next request is checked afresh."""
    check = request.app.get(ACCESS_CHECK)
    if check is not None:
        check.forget(user.username)
    return user_answer(user)


def user_answer(user: User, status: int = 200) -> web.Response:
    return web.json_response(user.to_json(), status=status)


# --- tokens and menus ---------------------------------------------------------------


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
    return json_error(
        401, f"unauthorized: {BAD_CREDENTIALS}", headers={"WWW-Authenticate": "Bearer"}
    )


@answers_errors
async def menus_handler(request: web.Request) -> web.StreamResponse:
    """``GET /menus``: the menus the caller's token roles may see."""
    who = caller(request)
    menus = request.app[MENUS].visible_to(who)
    return web.json_response(
        {
            "username": who.subject,
            "roles": sorted(who.roles),
            "menus": [menu.to_json() for menu in menus],
        }
    )


# --- the admin API ------------------------------------------------------------------


@answers_errors
async def create_user(request: web.Request) -> web.StreamResponse:
    await require_admin(request)
    fields = only(await read_fields(request), "username", "password", "roles")
    username = check_username(required(fields, "username"))
    password = check_password(required(fields, "password"), username=username)
    given_roles = fields.get("roles", list(DEFAULT_ROLES))
    if is_form(request):  # roles=admin,user or roles=admin&roles=user
        given = given_roles if isinstance(given_roles, list) else [given_roles]
        given_roles = [p.strip() for r in given for p in str(r).split(",") if p.strip()]
    roles = check_roles(given_roles)
    password_hash = await request.app[PASSWORDS].hash(password)
    user = await request.app[USER_STORE].create(username, password_hash, roles)
    request.app[LOGGER].info(
        "user_created", username=username, roles=list(roles), by=caller(request).subject
    )
    response = user_answer(user, status=201)
    response.headers["Location"] = f"/users/{quote(username, safe='')}"
    return response


@answers_errors
async def list_users(request: web.Request) -> web.StreamResponse:
    await require_admin(request)
    limit = _int_query(request, "limit", 100, 1, 1000)
    offset = _int_query(request, "offset", 0, 0, MAX_OFFSET)
    users = await request.app[USER_STORE].list(limit, offset)
    return web.json_response([user.to_json() for user in users])


def _int_query(request: web.Request, name: str, default: int, least: int, most: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidField(name, "must be an integer") from None
    if value < least or (most is not None and value > most):
        bounds = f"between {least} and {most}" if most is not None else f"at least {least}"
        raise InvalidField(name, f"must be {bounds}")
    return value


@answers_errors
async def get_user(request: web.Request) -> web.StreamResponse:
    await require_admin(request)
    username = path_username(request)
    user = await request.app[USER_STORE].get(username)
    if user is None:
        raise UserNotFound(username)
    return user_answer(user)


async def _set_disabled(request: web.Request, disabled: bool) -> web.StreamResponse:
    who = await require_admin(request)
    username = path_username(request)
    user = await request.app[USER_STORE].set_disabled(username, disabled)
    event = "user_disabled" if disabled else "user_enabled"
    request.app[LOGGER].info(event, username=username, by=who.subject)
    return user_changed(request, user)


@answers_errors
async def disable_user(request: web.Request) -> web.StreamResponse:
    return await _set_disabled(request, True)


@answers_errors
async def enable_user(request: web.Request) -> web.StreamResponse:
    return await _set_disabled(request, False)


@answers_errors
async def grant_role(request: web.Request) -> web.StreamResponse:
    who = await require_admin(request)
    username = path_username(request)
    role = check_role(request.match_info["role"])
    user = await request.app[USER_STORE].grant(username, role)
    request.app[LOGGER].info("role_granted", username=username, role=role, by=who.subject)
    return user_changed(request, user)


@answers_errors
async def revoke_role(request: web.Request) -> web.StreamResponse:
    who = await require_admin(request)
    username = path_username(request)
    role = check_role(request.match_info["role"])
    user = await request.app[USER_STORE].revoke(username, role)
    request.app[LOGGER].info("role_revoked", username=username, role=role, by=who.subject)
    return user_changed(request, user)


@answers_errors
async def set_password(request: web.Request) -> web.StreamResponse:
    who = await require_admin(request)
    username = path_username(request)
    fields = only(await read_fields(request), "password")
    password = check_password(required(fields, "password"), username=username)
    password_hash = await request.app[PASSWORDS].hash(password)
    user = await request.app[USER_STORE].set_password_hash(username, password_hash)
    request.app[LOGGER].info("password_set", username=username, by=who.subject)
    return user_changed(request, user)


@answers_errors
async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    """Another method on one of the gateway's own paths: 405, not a trip to the proxy."""
    resource = request.match_info.route.resource
    allowed = sorted({route.method for route in resource or () if route.method != "*"})
    allow = ", ".join(allowed)
    return json_error(405, f"method not allowed; allowed: {allow}", headers={"Allow": allow})


# --- wiring -------------------------------------------------------------------------


async def user_database(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the user database's engine for the app's life; seeds the admin."""
    settings = app[SETTINGS]
    engine = make_engine(settings.database_url, settings.db_pool_size)
    app[TRACING].instrument_engine(engine)
    app[USER_STORE] = UserStore(engine)
    app[SESSIONS] = SessionStore(engine, app[USER_STORE], settings.refresh_token_ttl_s)
    app[ACCESS_CHECK] = AccessCheck(app[SESSIONS], settings.access_check_cache_s)
    try:
        _check_keys(app)
        await app[PASSWORDS].prepare()
        await seed_admin(app)
        yield
    finally:
        await engine.dispose()


async def seed_admin(app: web.Application) -> None:
    """Create the first admin from settings unless a user by that name exists already.

    An existing user is left exactly as it is (password, roles, disabled), so restarting
    with another GATEWAY_ADMIN_PASSWORD never resets anything.
    """
    settings, log = app[SETTINGS], app[LOGGER]
    secret = settings.admin_password
    password = secret.get_secret_value() if secret is not None else ""
    if not password:
        log.warning(
            "no_admin_seeded", reason="GATEWAY_ADMIN_PASSWORD is not set", hint="set it to seed"
        )
        return
    try:
        username = check_username(settings.admin_username, "GATEWAY_ADMIN_USERNAME")
    except InvalidField as exc:
        raise ValueError(str(exc)) from None
    try:
        check_password(password, "GATEWAY_ADMIN_PASSWORD", username)
    except InvalidField as exc:  # seeded all the same: refusing would leave no admin at all
        log.warning("weak_admin_password", reason=exc.message)
    store = app[USER_STORE]
    if await store.get(username) is not None:
        log.info("admin_seed_skipped", username=username, reason="user exists")
        return
    password_hash = await app[PASSWORDS].hash(password)
    if await store.create_if_absent(username, password_hash, [ADMIN, USER]):
        log.info("admin_seeded", username=username)


def _check_keys(app: web.Application) -> None:
    """Warn about key settings that would make every login or every request fail."""
    settings, log = app[SETTINGS], app[LOGGER]
    verifier = app[TOKEN_VERIFIER].verifier
    if not verifier.keys:
        log.error("no_public_keys", reason="JWT_PUBLIC_KEYS is empty: every token is refused")
    issuer = app.get(TOKEN_ISSUER)
    if issuer is None:
        log.warning("no_signing_key", reason="JWT_PRIVATE_KEY is not set: /auth/token gives 503")
        return
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    mine = issuer.key.public_key().public_bytes(*raw)
    published = verifier.keys.get(settings.jwt_key_id)
    if published is None or published.public_bytes(*raw) != mine:  # type: ignore[union-attr]
        log.error(
            "signing_key_not_published",
            reason=f"JWT_PUBLIC_KEYS[{settings.jwt_key_id!r}] is not JWT_PRIVATE_KEY's public "
            "key: tokens from /auth/token will be refused",
        )


def add_identity(app: web.Application) -> None:
    """Identity for the gateway: call before the catch-all proxy route is added."""
    settings = app[SETTINGS]
    app[TOKEN_VERIFIER] = VerifiedTokens(settings.token_verifier())
    issuer = settings.token_issuer()
    if issuer is not None:
        app[TOKEN_ISSUER] = issuer
    app[PASSWORDS] = Passwords()
    if settings.login_user_rate_limit_per_s > 0:
        app[LOGIN_USER_LIMITER] = RateLimiter(
            settings.login_user_rate_limit_per_s,
            settings.login_user_rate_limit_burst,
            max_keys=settings.rate_limit_max_keys,
        )
    app[MENUS] = MenuCatalogue.load(settings.menus_file, KNOWN_ROLES)
    app[PUBLIC_HANDLERS] = frozenset(
        {
            token_handler,
            refresh_handler,
            logout_handler,
            live_handler,
            ready_handler,
            metrics_handler,
            method_not_allowed,
        }
    )
    app.cleanup_ctx.append(user_database)

    routes: dict[str, dict[str, Handler]] = {
        "/auth/token": {"POST": token_handler},
        "/auth/refresh": {"POST": refresh_handler},
        "/auth/logout": {"POST": logout_handler},
        "/menus": {"GET": menus_handler},
        "/users": {"GET": list_users, "POST": create_user},
        "/users/{username}": {"GET": get_user},
        "/users/{username}/disable": {"PUT": disable_user},
        "/users/{username}/enable": {"PUT": enable_user},
        "/users/{username}/password": {"PUT": set_password},
        "/users/{username}/roles/{role}": {"PUT": grant_role, "DELETE": revoke_role},
    }
    for path, handlers in routes.items():
        resource = app.router.add_resource(path)
        for method, handler in handlers.items():
            resource.add_route(method, handler)
            if method == "GET":
                resource.add_route("HEAD", handler)
        resource.add_route("*", method_not_allowed)
