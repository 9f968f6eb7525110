"""``/users/**``: admins manage users and their roles (403 for anyone else).

Whether the caller is an admin is asked of the user store, not of the token, so an admin
whose role was just revoked cannot go on managing users until their token expires.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.authentication import ACCESS_CHECK, caller
from gateway.identity_keys import PASSWORDS, USER_STORE
from gateway.parsing import MAX_OFFSET, is_form, only, read_fields, required
from gateway.route_errors import answers_errors
from gateway.state import LOGGER
from gateway.user_rules import (
    DEFAULT_ROLES,
    USERNAME_MAX,
    InvalidField,
    check_password,
    check_role,
    check_roles,
    check_username,
)
from gateway.users import User, UserNotFound
from servicekit.auth import Forbidden, Identity


def path_username(request: web.Request) -> str:
    """The ``{username}`` of the path; one that no user could have is simply not found."""
    username = request.match_info["username"]
    if len(username) > USERNAME_MAX or "\x00" in username:
        raise UserNotFound(username)
    return username


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
    return await _change_role(request, grant=True)


@answers_errors
async def revoke_role(request: web.Request) -> web.StreamResponse:
    return await _change_role(request, grant=False)


async def _change_role(request: web.Request, *, grant: bool) -> web.StreamResponse:
    who = await require_admin(request)
    username = path_username(request)
    role = check_role(request.match_info["role"])
    store = request.app[USER_STORE]
    user = await (store.grant if grant else store.revoke)(username, role)
    event = "role_granted" if grant else "role_revoked"
    request.app[LOGGER].info(event, username=username, role=role, by=who.subject)
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
