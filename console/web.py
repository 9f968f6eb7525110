"""What every page shares: the session, CSRF, the language, the menu, rendering, errors."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from console import i18n
from console.gateway_client import GatewayClient
from console.sessions import COOKIE, Session, SessionStore
from console.settings import ConsoleSettings

PREFIX = "/ui"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
PRE_CSRF_COOKIE = "nocode_console_pre"  # the sign-in form's token, before any session

# Page -> the menu ids (GET /menus) that open it; in the order the menu shows them.
PAGES: dict[str, tuple[str, ...]] = {
    "my-requests": ("my-requests",),
    "new-model-request": ("new-model-request",),
    "new-target-request": ("new-target-request",),
    "notices": ("notices",),
    "inbox": ("model-approvals", "target-approvals"),
    "users": ("users",),
    "operations": ("jobs",),
}
PAGE_PATHS = {
    "my-requests": "/requests",
    "new-model-request": "/models/new",
    "new-target-request": "/targets/new",
    "notices": "/notices",
    "inbox": "/inbox",
    "users": "/users",
    "operations": "/operations",
}


class NotFoundPage(Exception):
    """Answered with the 404 page: missing, or not the caller's to open."""


class SignInFirst(Exception):
    def __init__(self, expired: bool, next_path: str) -> None:
        self.expired = expired
        self.next_path = next_path


class BadCsrf(Exception):
    """A state-changing request without this session's CSRF token."""


def settings_of(request: Request) -> ConsoleSettings:
    return request.app.state.settings


def api(request: Request) -> GatewayClient:
    return request.app.state.gateway


def sessions(request: Request) -> SessionStore:
    return request.app.state.sessions


def language(request: Request) -> str:
    wanted = request.query_params.get("lang")
    if wanted in i18n.LANGUAGES:
        return wanted
    return i18n.choose(
        request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language")
    )


def is_https(request: Request) -> bool:
    mode = settings_of(request).cookie_secure
    if mode != "auto":
        return mode == "always"
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return (forwarded or request.url.scheme) == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, **kw: Any) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        **kw,
    )


async def current_session(request: Request) -> Session:
    """The caller's session; else the sign-in page (saying so when it has expired)."""
    session, expired = sessions(request).get(request.cookies.get(COOKIE))
    if session is None:
        raise SignInFirst(expired, request.url.path)
    return session


async def csrf_checked(request: Request) -> Session:
    """The session of a state-changing request that carries its CSRF token (a form field
    ``csrf`` or the ``X-CSRF-Token`` header); 403 otherwise."""
    session = await current_session(request)
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = (await request.form()).get("csrf")  # type: ignore[assignment]
    if not session.csrf_ok(given if isinstance(given, str) else None):
        raise BadCsrf()
    return session


Current = Annotated[Session, Depends(current_session)]
Checked = Annotated[Session, Depends(csrf_checked)]


def require(session: Session, page: str) -> None:
    if not session.may_open(*PAGES[page]):
        raise NotFoundPage(page)


def page_url(page: str) -> str:
    return PREFIX + PAGE_PATHS[page]


def flash(session: Session, kind: str, text: str) -> None:
    session.flash.append((kind, text))


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def signin_redirect(expired: bool, next_path: str) -> RedirectResponse:
    query = "?expired=1" if expired else "?"
    if next_path.startswith(PREFIX + "/") and not next_path.startswith(PREFIX + "/signin"):
        query += ("&" if expired else "") + "next=" + quote(next_path, safe="/")
    return redirect(PREFIX + "/signin" + (query if query != "?" else ""))


def age(since: str | None, lang: str, now: datetime | None = None) -> str:
    """How long ago an ISO time was, shortly: ``45 s``, ``3 min``, ``2 h``, ``1 d``."""
    if not since:
        return ""
    then = datetime.fromisoformat(since.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    t = i18n.translator(lang)
    if seconds < 60:
        return t("seconds", n=seconds)
    if seconds < 3600:
        return t("minutes", n=seconds // 60)
    if seconds < 86400:
        return t("hours", n=seconds // 3600)
    return t("days", n=seconds // 86400)


def when(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if not value:
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def render(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status: int = 200,
    active: str = "",
    **context: Any,
) -> HTMLResponse:
    lang = language(request)
    nav = []
    if session is not None:
        nav = [
            {"id": page, "url": page_url(page), "count": context.get("nav_counts", {}).get(page)}
            for page in PAGES
            if session.may_open(*PAGES[page])
        ]
    messages = list(session.flash) if session is not None else []
    if session is not None:
        session.flash.clear()
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": i18n.translator(lang),
            "lang": lang,
            "session": session,
            "nav": nav,
            "active": active,
            "flashes": messages,
            "prefix": PREFIX,
            "path": request.url.path,
            "state_key": i18n.state_key,
            "when": when,
            "age": lambda since: age(since, lang),
            "new_key": lambda: uuid.uuid4().hex,  # a form's Idempotency-Key
            **context,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in i18n.LANGUAGES:
        set_cookie(request, response, i18n.LANG_COOKIE, lang, max_age=365 * 86400)
    return response


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(32)


async def pending_requests(request: Request, session: Session) -> list[dict[str, Any]]:
    """Model and target requests waiting for an admin, oldest first (what the inbox lists
    and its menu counts), of the kinds this session may approve."""
    client = api(request)
    pending: list[dict[str, Any]] = []
    for kind, path, menu in (
        ("model", "/models", "model-approvals"),
        ("target", "/targets", "target-approvals"),
    ):
        if not session.may_open(menu):
            continue
        for row in await client.get_list(path, session):
            if row.get("state") == "requested":
                pending.append({**row, "kind": kind})
    pending.sort(key=lambda r: (r.get("createdAt") or "", r["kind"], r["id"]))
    return pending


async def show(
    request: Request, template: str, session: Session, *, active: str = "", **context: Any
) -> HTMLResponse:
    """A signed-in page: the menu with the inbox's count, then the template."""
    counts: dict[str, int] = {}
    if session.may_open(*PAGES["inbox"]):
        pending = context.get("pending")
        if pending is None:
            pending = await pending_requests(request, session)
        counts["inbox"] = len(pending)
    return render(request, template, session, active=active, nav_counts=counts, **context)
