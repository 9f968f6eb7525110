"""Operations (admins: jobs and health as `nocode status` sees it) and the user's
notifications feed."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import Response

from console.web import PREFIX, Current, api, require, show
from nocode import status

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
    return await show(
        request,
        "operations.html",
        session,
        active="operations",
        jobs=jobs[:200],
        snapshot=snapshot,
        verdict=verdict,
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
