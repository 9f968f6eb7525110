"""The gateway's own identity endpoints, wired: tokens, menus and the admin API for users.

``POST /auth/token``, ``/auth/refresh``, ``/auth/logout`` (gateway.token_routes),
``GET /menus`` (here: the menus the caller's roles may see) and ``/users/**``
(gateway.user_routes). :func:`add_identity` wires all of it into the app: the token
verifier the identity middleware uses, the signer, the menu catalogue, the user database
(opened, and the first admin seeded, when the app starts) and the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from gateway.authentication import (
    ACCESS_CHECK,
    PUBLIC_HANDLERS,
    TOKEN_VERIFIER,
    VerifiedTokens,
    caller,
)
from gateway.health import live_handler, ready_handler
from gateway.identity_keys import (
    LOGIN_USER_LIMITER,
    MENUS,
    PASSWORDS,
    SESSIONS,
    TOKEN_ISSUER,
    USER_STORE,
)
from gateway.menus import MenuCatalogue
from gateway.metrics import metrics_handler
from gateway.passwords import Passwords
from gateway.rate_limit import RateLimiter
from gateway.route_errors import Handler, answers_errors, method_not_allowed
from gateway.sessions import AccessCheck, SessionStore
from gateway.state import LOGGER, SETTINGS, TRACING
from gateway.token_routes import logout_handler, refresh_handler, token_handler
from gateway.user_routes import (
    create_user,
    disable_user,
    enable_user,
    get_user,
    grant_role,
    list_users,
    revoke_role,
    set_password,
)
from gateway.user_rules import (
    ADMIN,
    KNOWN_ROLES,
    USER,
    InvalidField,
    check_password,
    check_username,
)
from gateway.users import UserStore
from servicekit.db import make_engine


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
