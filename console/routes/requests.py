"""My requests (live), one request's timeline (live), and cancelling a request."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console import i18n
from console.describe import describe
from console.live import stream
from console.sessions import Session
from console.web import (
    PREFIX,
    Checked,
    Current,
    NotFoundPage,
    api,
    flash,
    language,
    redirect,
    require,
    show,
    templates,
)
from console.web import age as age_of
from console.web import when as when_of

router = APIRouter(prefix=PREFIX)

VIEW_ID = re.compile(r"^(model|target)-([1-9][0-9]{0,17})$")
LIVE_STATES = frozenset({"requested", "approved", "inProgress"})


# --- my requests -------------------------------------------------------------------------


def filtered(rows: list[dict[str, Any]], kind: str, state: str, q: str) -> list[dict[str, Any]]:
    """Rows of ``kind`` in ``state`` whose name contains ``q`` (any case), newest first."""
    q = q.strip().casefold()
    found = [
        r
        for r in rows
        if (not kind or r.get("kind") == kind)
        and (not state or i18n.state_key(r.get("state")) == state)
        and (not q or q in (r.get("name") or "").casefold())
    ]
    return sorted(found, key=lambda r: (r.get("createdAt") or "", r.get("id")), reverse=True)


def query_of(request: Request) -> dict[str, Any]:
    p = request.query_params
    kind = p.get("kind", "") if p.get("kind") in ("model", "target") else ""
    state = p.get("state", "") if p.get("state") in i18n.FILTER_STATES else ""
    try:
        page = max(1, int(p.get("page", "1")))
    except ValueError:
        page = 1
    return {"kind": kind, "state": state, "q": p.get("q", "")[:255], "page": page}


async def requests_fragment(request: Request, session: Session, query: dict[str, Any]) -> str:
    rows = await api(request).get_list("/myRequests", session, userId=session.username)
    found = filtered(rows, query["kind"], query["state"], query["q"])
    size = request.app.state.settings.page_size
    pages = max(1, math.ceil(len(found) / size))
    page = min(query["page"], pages)
    lang = language(request)
    return templates.get_template("_requests.html").render(
        t=i18n.translator(lang),
        rows=found[(page - 1) * size : page * size],
        total=len(found),
        page=page,
        pages=pages,
        query=query,
        prefix=PREFIX,
        state_key=i18n.state_key,
        cancellable=LIVE_STATES,
        when=when_of,
        age=lambda since: age_of(since, lang),
    )


@router.get("/")
async def home(session: Current) -> Response:
    return redirect(PREFIX + "/requests")


@router.get("/requests")
async def my_requests(request: Request, session: Current) -> Response:
    require(session, "my-requests")
    query = query_of(request)
    fragment = await requests_fragment(request, session, query)
    return await show(
        request,
        "requests.html",
        session,
        active="my-requests",
        fragment=fragment,
        query=query,
        states=i18n.FILTER_STATES,
        live_url=f"{PREFIX}/requests/live?{request.url.query}",
    )


@router.get("/requests/live")
async def my_requests_live(request: Request, session: Current) -> Response:
    require(session, "my-requests")
    query = query_of(request)
    return stream(request, session, lambda: requests_fragment(request, session, query))


# --- one request -------------------------------------------------------------------------


async def request_row(request: Request, session: Session, view_id: str) -> dict[str, Any]:
    """The request as the read model has it; 404 when missing or someone else's."""
    require(session, "my-requests")
    if not VIEW_ID.match(view_id):
        raise NotFoundPage(view_id)
    answer = await api(request).get(f"/myRequests/{view_id}", session)
    if answer.status in (403, 404) or not answer.ok:
        raise NotFoundPage(view_id)
    return answer.body


def fallback_entries(row: dict[str, Any]) -> list[dict[str, Any]]:
    """What the request row alone tells, where the timeline read model does not answer."""
    entries = [
        {"at": row["createdAt"], "kind": "state", "state": "requested", "actor": row["userId"]}
    ]
    if row.get("state") != "requested":
        entries.append(
            {
                "at": row["updatedAt"],
                "kind": "state",
                "state": row["state"],
                "reason": row["reason"],
            }
        )
    if row.get("lmsStatus"):
        entries.append({"at": row["updatedAt"], "kind": "lms", "state": row["lmsStatus"]})
    return entries


async def timeline_fragment(request: Request, session: Session, view_id: str) -> str:
    kind, number = view_id.split("-")
    client = api(request)
    answer = await client.get(f"/myRequests/{kind}/{number}/timeline", session)
    if answer.ok and isinstance(answer.body, dict):
        row, entries = answer.body["request"], list(answer.body["entries"])
    else:
        row = await request_row(request, session, view_id)
        entries = fallback_entries(row)
    notices = await client.get_list(
        "/notices", session, requestKind=kind, requestId=number, userId=row["userId"]
    )
    for n in notices:
        if n.get("requestKind") == kind and str(n.get("requestId")) == number:
            entries.append({"at": n["createdAt"], "kind": "chat", "notice": n})
    entries.sort(key=lambda e: e.get("at") or "")
    lang = language(request)
    t = i18n.translator(lang)
    return templates.get_template("_timeline.html").render(
        t=t,
        describe=lambda entry: describe(entry, t),
        row=row,
        entries=entries,
        prefix=PREFIX,
        state_key=i18n.state_key,
        when=when_of,
        cancellable=row.get("state") in LIVE_STATES,
    )


@router.get("/requests/{view_id}")
async def timeline(request: Request, session: Current, view_id: str) -> Response:
    row = await request_row(request, session, view_id)
    fragment = await timeline_fragment(request, session, view_id)
    return await show(
        request,
        "timeline.html",
        session,
        active="my-requests",
        row=row,
        fragment=fragment,
        live_url=f"{PREFIX}/requests/{view_id}/live",
    )


@router.get("/requests/{view_id}/live")
async def timeline_live(request: Request, session: Current, view_id: str) -> Response:
    await request_row(request, session, view_id)
    return stream(request, session, lambda: timeline_fragment(request, session, view_id))


# --- cancelling --------------------------------------------------------------------------


@router.get("/requests/{view_id}/cancel")
async def cancel_form(request: Request, session: Current, view_id: str) -> Response:
    row = await request_row(request, session, view_id)
    return await show(
        request,
        "cancel.html",
        session,
        active="my-requests",
        row=row,
        cancellable=row.get("state") in LIVE_STATES,
    )


@router.post("/requests/{view_id}/cancel")
async def cancel(
    request: Request,
    session: Checked,
    view_id: str,
    reason: Annotated[str, Form()] = "",
    idem: Annotated[str, Form()] = "",
) -> Response:
    row = await request_row(request, session, view_id)
    kind, number = view_id.split("-")
    path = f"/{'models' if kind == 'model' else 'targets'}/{number}/cancel"
    body = {"reason": reason.strip()} if reason.strip() else {}
    answer = await api(request).call("PUT", path, session, json=body, idempotency_key=idem)
    t = i18n.translator(language(request))
    if answer.ok:
        flash(session, "ok", t("cancelled_ok", id=view_id))
    elif (
        answer.status == 409
        and isinstance(answer.body, dict)
        and (answer.body.get("currentState") == "completed")
    ):
        flash(session, "error", t("too_late", id=view_id))
    else:
        flash(session, "error", t("not_cancellable", id=view_id, detail=answer.detail))
    return redirect(f"{PREFIX}/requests/{row['id']}")
