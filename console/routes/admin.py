"""Admins: the approval inbox, and users and their roles."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console import i18n
from console.routes.forms import form_errors
from console.sessions import Session
from console.web import (
    PREFIX,
    Checked,
    Current,
    NotFoundPage,
    api,
    flash,
    language,
    pending_requests,
    redirect,
    require,
    show,
)

router = APIRouter(prefix=PREFIX)

KINDS = {"model": ("/models", "model-approvals"), "target": ("/targets", "target-approvals")}
ROLES = ("admin", "user")


@router.get("/inbox")
async def inbox(request: Request, session: Current) -> Response:
    require(session, "inbox")
    pending = await pending_requests(request, session)
    return await show(request, "inbox.html", session, active="inbox", pending=pending)


async def _decide(
    request: Request, session: Session, kind: str, number: int, verb: str, reason: str, idem: str
) -> Response:
    require(session, "inbox")
    if kind not in KINDS or not session.may_open(KINDS[kind][1]) or number < 1:
        raise NotFoundPage(kind)
    path = f"{KINDS[kind][0]}/{number}" + ("/reject" if verb == "reject" else "")
    answer = await api(request).call(
        "PUT",
        path,
        session,
        json={"reason": reason} if verb == "reject" else None,
        idempotency_key=idem,
    )
    t = i18n.translator(language(request))
    label = f"{kind}-{number}"
    if answer.ok:
        flash(session, "ok", t("approved_ok" if verb == "approve" else "rejected_ok", id=label))
    else:
        detail = "; ".join(f"{f}: {m}" for f, m in answer.field_errors.items()) or answer.detail
        flash(session, "error", t("refused", id=label, detail=detail))
    return redirect(PREFIX + "/inbox")


@router.post("/inbox/{kind}/{number}/approve")
async def approve(
    request: Request,
    session: Checked,
    kind: str,
    number: int,
    idem: Annotated[str, Form()] = "",
) -> Response:
    return await _decide(request, session, kind, number, "approve", "", idem)


@router.post("/inbox/{kind}/{number}/reject")
async def reject(
    request: Request,
    session: Checked,
    kind: str,
    number: int,
    reason: Annotated[str, Form()] = "",
    idem: Annotated[str, Form()] = "",
) -> Response:
    return await _decide(request, session, kind, number, "reject", reason, idem)


# --- users -------------------------------------------------------------------------------


async def _users_page(
    request: Request,
    session: Session,
    *,
    values: dict[str, object] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    users = await api(request).get_list("/users", session)
    return await show(
        request,
        "users.html",
        session,
        active="users",
        users=users,
        roles=ROLES,
        values=values or {"roles": ["user"]},
        errors=errors or {},
        status=status,
    )


@router.get("/users")
async def users(request: Request, session: Current) -> Response:
    require(session, "users")
    return await _users_page(request, session)


@router.post("/users")
async def create_user(request: Request, session: Checked) -> Response:
    require(session, "users")
    form = await request.form()
    username = str(form.get("username", ""))
    roles = [str(r) for r in form.getlist("roles")]
    answer = await api(request).call(
        "POST",
        "/users",
        session,
        json={"username": username, "password": str(form.get("password", "")), "roles": roles},
    )
    if answer.ok:
        flash(session, "ok", i18n.translator(language(request))("user_created", user=username))
        return redirect(PREFIX + "/users")
    errors = form_errors(answer.field_errors, ("username", "password", "roles"))
    if not errors:
        errors["_form"] = answer.detail or f"HTTP {answer.status}"
    return await _users_page(
        request, session, values={"username": username, "roles": roles}, errors=errors, status=422
    )


@router.post("/users/{username}/{action}")
async def change_user(
    request: Request,
    session: Checked,
    username: str,
    action: str,
    role: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    require(session, "users")
    who = quote(username, safe="")
    calls = {
        "disable": ("PUT", f"/users/{who}/disable", None),
        "enable": ("PUT", f"/users/{who}/enable", None),
        "grant": ("PUT", f"/users/{who}/roles/{quote(role, safe='')}", None),
        "revoke": ("DELETE", f"/users/{who}/roles/{quote(role, safe='')}", None),
        "password": ("PUT", f"/users/{who}/password", {"password": password}),
    }
    if action not in calls:
        raise NotFoundPage(action)
    method, path, body = calls[action]
    answer = await api(request).call(method, path, session, json=body)
    t = i18n.translator(language(request))
    if answer.ok:
        flash(session, "ok", t("user_done", user=username))
    else:
        detail = "; ".join(f"{f}: {m}" for f, m in answer.field_errors.items()) or answer.detail
        flash(session, "error", t("refused", id=username, detail=detail))
    return redirect(PREFIX + "/users")
