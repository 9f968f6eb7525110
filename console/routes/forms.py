"""Request a model, request a target: the API's answers decide, errors beside their field."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console import i18n
from console.sessions import Session
from console.web import PREFIX, Checked, Current, api, flash, language, redirect, require, show

router = APIRouter(prefix=PREFIX)


async def completed_models(request: Request, session: Session) -> list[dict[str, Any]]:
    """The caller's own completed model requests, the only ones a target can use."""
    rows = await api(request).get_list("/myRequests", session, userId=session.username)
    models = [
        r
        for r in rows
        if r.get("kind") == "model"
        and r.get("state") == "completed"
        and r.get("userId") == session.username
    ]
    return sorted(models, key=lambda r: r["requestId"], reverse=True)


def form_errors(answer_errors: dict[str, str], fields: tuple[str, ...]) -> dict[str, str]:
    """The API's field errors keyed by form field; any other goes under ``_form``."""
    errors = {f: m for f, m in answer_errors.items() if f in fields}
    others = [f"{f}: {m}" for f, m in answer_errors.items() if f not in fields]
    if others:
        errors["_form"] = "; ".join(others)
    return errors


@router.get("/models/new")
async def new_model(request: Request, session: Current) -> Response:
    require(session, "new-model-request")
    return await show(
        request, "new_model.html", session, active="new-model-request", values={}, errors={}
    )


@router.post("/models/new")
async def create_model(
    request: Request,
    session: Checked,
    modelName: Annotated[str, Form()] = "",
    idem: Annotated[str, Form()] = "",
) -> Response:
    require(session, "new-model-request")
    answer = await api(request).call(
        "POST",
        "/models",
        session,
        json={"userId": session.username, "modelName": modelName},
        idempotency_key=idem,
    )
    if answer.ok:
        t = i18n.translator(language(request))
        flash(session, "ok", t("requested_ok", id=f"model-{answer.body['id']}"))
        return redirect(PREFIX + "/requests")
    errors = form_errors(answer.field_errors, ("modelName",))
    if not errors:
        errors["_form"] = answer.detail or f"HTTP {answer.status}"
    return await show(
        request,
        "new_model.html",
        session,
        active="new-model-request",
        values={"modelName": modelName},
        errors=errors,
        status=422 if answer.status == 422 else 400,
    )


@router.get("/targets/new")
async def new_target(request: Request, session: Current) -> Response:
    require(session, "new-target-request")
    models = await completed_models(request, session)
    chosen = request.query_params.get("model", "")
    return await show(
        request,
        "new_target.html",
        session,
        active="new-target-request",
        models=models,
        values={"modelRequestId": chosen},
        errors={},
    )


@router.post("/targets/new")
async def create_target(
    request: Request,
    session: Checked,
    type: Annotated[str, Form()] = "",
    modelRequestId: Annotated[str, Form()] = "",
    idem: Annotated[str, Form()] = "",
) -> Response:
    require(session, "new-target-request")
    models = await completed_models(request, session)
    errors: dict[str, str] = {}
    if modelRequestId not in {str(m["requestId"]) for m in models}:
        errors["modelRequestId"] = i18n.translator(language(request))("no_completed_models")
    else:
        answer = await api(request).call(
            "POST",
            "/targets",
            session,
            json={
                "userId": session.username,
                "type": type,
                "modelRequestId": int(modelRequestId),
            },
            idempotency_key=idem,
        )
        if answer.ok:
            t = i18n.translator(language(request))
            flash(session, "ok", t("requested_ok", id=f"target-{answer.body['id']}"))
            return redirect(PREFIX + "/requests")
        errors = form_errors(answer.field_errors, ("type", "modelRequestId"))
        if not errors:
            errors["_form"] = answer.detail or f"HTTP {answer.status}"
    return await show(
        request,
        "new_target.html",
        session,
        active="new-target-request",
        models=models,
        values={"type": type, "modelRequestId": modelRequestId},
        errors=errors,
        status=422,
    )
