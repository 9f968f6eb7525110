"""Sign in and out. The browser gets an opaque session cookie; the token stays here."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated

import jwt
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console import i18n
from console.gateway_client import GatewayDown
from console.sessions import COOKIE
from console.web import (
    PAGE_PATHS,
    PAGES,
    PRE_CSRF_COOKIE,
    PREFIX,
    Checked,
    api,
    language,
    new_pre_csrf,
    redirect,
    render,
    sessions,
    set_cookie,
)

router = APIRouter(prefix=PREFIX)


def _signin_page(
    request: Request, *, error: str = "", username: str = "", status: int = 200
) -> Response:
    token = new_pre_csrf()
    message = ""
    if request.query_params.get("expired"):
        message = "expired"
    elif request.query_params.get("bye"):
        message = "signed_out"
    response = render(
        request,
        "signin.html",
        None,
        status=status,
        csrf=token,
        error=error,
        message=message,
        username=username,
        next=request.query_params.get("next", ""),
    )
    set_cookie(request, response, PRE_CSRF_COOKIE, token)
    return response


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    return _signin_page(request)


@router.post("/signin")
async def signin(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(PRE_CSRF_COOKIE)
    if not expected or csrf != expected:
        return _signin_page(request, error="csrf", username=username, status=403)
    client = api(request)
    answer = await client.call(
        "POST", "/auth/token", None, data={"username": username, "password": password}
    )
    if answer.status == 429:
        return _signin_page(request, error="too_many", username=username, status=429)
    if answer.status in (401, 422):  # wrong or missing username or password
        return _signin_page(request, error="bad_credentials", username=username, status=401)
    if not answer.ok:
        return _signin_page(request, error="unavailable", username=username, status=503)
    token = answer.body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    expires_at = float(claims.get("exp", time.time() + answer.body.get("expires_in", 0)))
    menus = await client.call("GET", "/menus", None, token=token)
    body = menus.body if menus.ok and isinstance(menus.body, dict) else {}
    refresh = answer.body.get("refresh_token")
    session = sessions(request).create(
        username=body.get("username", username),
        roles=tuple(body.get("roles", ())),
        token=token,
        token_expires_at=expires_at,
        menus=tuple(m["id"] for m in body.get("menus", ())),
        refresh_token=refresh,
        refresh_expires_at=time.time() + float(answer.body.get("refresh_expires_in", 0)),
    )
    first = next if next.startswith(PREFIX + "/") and not next.startswith("//") else ""
    if not first:
        page = next_page(session.menus)
        first = PREFIX + PAGE_PATHS[page] if page else PREFIX + "/requests"
    response = redirect(first)
    set_cookie(request, response, COOKIE, session.id)
    response.delete_cookie(PRE_CSRF_COOKIE, path=PREFIX)
    if language(request) in i18n.LANGUAGES:
        set_cookie(request, response, i18n.LANG_COOKIE, language(request), max_age=365 * 86400)
    return response


def next_page(menus: tuple[str, ...]) -> str | None:
    return next((page for page, ids in PAGES.items() if any(m in menus for m in ids)), None)


@router.post("/signout")
async def signout(request: Request, session: Checked) -> Response:
    sessions(request).end(session.id)
    if session.refresh_token:  # the gateway ends the session too, not just this cookie
        with contextlib.suppress(GatewayDown):
            await api(request).call(
                "POST", "/auth/logout", None, data={"refresh_token": session.refresh_token}
            )
    response = redirect(PREFIX + "/signin?bye=1")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
