"""Operations (admins: jobs and health as `nocode status` sees it) and the user's
notifications feed."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from console.sessions import Session
from console.web import PREFIX, Checked, Current, NotFoundPage, api, require, show
from nocode import status
from nocode.dlq import HAS_FAILED
from nocode.dlq import PREFIX as SERVICE_PREFIX

# What an admin can re-drive: every consuming service's dead letters, core's and notice's
# failed things (jobs and LMS sends, chat messages).
DEAD_LETTER_SERVICES = ("model", "target", "core", "notice", "mypage_cqrs")
WHATS = ("dead-letters", "failed")

router = APIRouter(prefix=PREFIX)


def health_urls(request: Request) -> dict[str, str]:
    urls = request.app.state.settings.service_urls
    return dict(urls) if urls else status.service_urls()


@router.get("/operations")
async def operations(request: Request, session: Current) -> Response:
    require(session, "operations")
    jobs = await api(request).get_list("/cores", session)
    jobs.sort(key=lambda j: j.get("id", 0), reverse=True)
    snapshot = await status.gather(health_urls(request))
    verdict = status.verdict(snapshot)
    stuck = await _stuck(request, session)
    stalls = await api(request).get("/myRequests/ops/stalls", session)
    return await show(
        request,
        "operations.html",
        session,
        active="operations",
        jobs=jobs[:200],
        snapshot=snapshot,
        verdict=verdict,
        stuck=stuck,
        short=short_error,
        stalls=stalls.body if stalls.ok and isinstance(stalls.body, list) else [],
        stalls_error="" if stalls.ok else f"HTTP {stalls.status}: {stalls.detail}",
    )


def short_error(error: str | None, limit: int = 240) -> str:
    """An error's first line without the SQL statement and its values a database error
    carries (the dead letter keeps it all; ``nocode dlq list`` and the API show it)."""
    first = (error or "").strip().split("\n", 1)[0].split(" [SQL:", 1)[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _lists() -> list[tuple[str, str]]:
    """(service, what) of every list the page shows, in its order."""
    return [(s, "dead-letters") for s in DEAD_LETTER_SERVICES] + [(s, "failed") for s in HAS_FAILED]


async def _stuck(request: Request, session: Session) -> list[dict[str, Any]]:
    """Each list: its service, what, rows, and the error if the service did not answer."""
    pairs = _lists()
    answers = await asyncio.gather(
        *(api(request).get(f"{SERVICE_PREFIX[s]}/ops/{w}", session) for s, w in pairs)
    )
    lists = []
    for (service, what), answer in zip(pairs, answers, strict=True):
        ok = answer.ok and isinstance(answer.body, list)
        lists.append(
            {
                "service": service,
                "what": what,
                "rows": answer.body if ok else [],
                "error": "" if ok else f"HTTP {answer.status} {answer.detail}".strip(),
            }
        )
    return lists


def _chosen(service: str, what: str, ids: list[str]) -> list[tuple[str, str]]:
    if (service, what) not in _lists():
        raise NotFoundPage(f"{service} {what}")
    params = [("id", i) for i in ids if i.isdigit() and int(i) > 0]
    if len(params) != len(ids):
        raise NotFoundPage(f"{service} {what}")
    return params


async def _redrive(
    request: Request, session: Session, service: str, what: str, ids: list[str], dry_run: bool
) -> tuple[list[dict[str, Any]], str]:
    """The re-drive report's rows ({id, type, subject, outcome, detail}), or an error."""
    params = _chosen(service, what, ids)
    params.append(("dryRun", "true" if dry_run else "false"))
    if not ids and what == "dead-letters":  # failed/redrive takes every failed one
        params.append(("limit", "1000"))
    answer = await api(request).call(
        "POST",
        f"{SERVICE_PREFIX[service]}/ops/{what}/redrive",
        session,
        params=params,  # type: ignore[arg-type]
    )
    if not answer.ok or not isinstance(answer.body, dict):
        return [], f"HTTP {answer.status} {answer.detail}".strip()
    rows = []
    for d in answer.body.get("deadLetters", []):
        letter = d["deadLetter"]
        rows.append(
            {
                "id": letter["id"],
                "type": letter["eventType"],
                "subject": f"{letter['topic']} @ {letter['partition']}:{letter['offset']}",
                "error": short_error(letter["error"]),
                "outcome": d["outcome"],
                "detail": short_error(d.get("detail")),
            }
        )
    for f in answer.body.get("failed", []):
        item = f["item"]
        rows.append(
            {
                "id": item["id"],
                "type": item["kind"],
                "subject": item["subject"],
                "error": short_error(item.get("error")),
                "outcome": f["outcome"],
                "detail": "",
            }
        )
    return rows, ""


@router.get("/operations/redrive")
async def redrive_confirm(request: Request, session: Current) -> Response:
    """The dry run's outcome for what the admin chose, and the button that re-drives it."""
    require(session, "operations")
    q = request.query_params
    service, what, ids = q.get("service", ""), q.get("what", ""), q.getlist("id")
    return await _redrive_page(request, session, service, what, ids, dry_run=True)


@router.post("/operations/redrive")
async def redrive(request: Request, session: Checked) -> Response:
    """Re-drive exactly what the confirmation listed, and show each outcome."""
    require(session, "operations")
    form = await request.form()
    service, what = str(form.get("service", "")), str(form.get("what", ""))
    ids = [str(i) for i in form.getlist("id")]
    if not ids:
        raise NotFoundPage("nothing chosen")
    return await _redrive_page(request, session, service, what, ids, dry_run=False)


async def _redrive_page(
    request: Request, session: Session, service: str, what: str, ids: list[str], *, dry_run: bool
) -> Response:
    """The dry run (with the button that re-drives it) or the re-drive's outcome."""
    rows, error = await _redrive(request, session, service, what, ids, dry_run=dry_run)
    return await show(
        request,
        "redrive.html",
        session,
        active="operations",
        service=service,
        what=what,
        rows=rows,
        error=error,
        done=not dry_run,
    )


@router.get("/notices")
async def notices(request: Request, session: Current) -> Response:
    require(session, "notices")
    rows = await api(request).get_list("/notices", session, userId=session.username)
    rows.sort(key=lambda n: (n.get("createdAt") or "", n.get("id", 0)), reverse=True)
    size = request.app.state.settings.page_size
    pages = max(1, math.ceil(len(rows) / size))
    try:
        page = min(max(1, int(request.query_params.get("page", "1"))), pages)
    except ValueError:
        page = 1
    return await show(
        request,
        "notices.html",
        session,
        active="notices",
        notices=rows[(page - 1) * size : page * size],
        page=page,
        pages=pages,
        total=len(rows),
    )
