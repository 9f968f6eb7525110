"""One timeline entry's details in words (the read model's ``detail`` fields)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Translate = Callable[..., str]

# kind -> (message key, the detail fields it needs)
PHRASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "batch": ("d.batch", ("batch", "offset", "rows", "totalRows")),
    "progress": ("d.progress", ("step", "totalSteps", "progress")),
    "check": ("d.check", ("outcome", "modelState", "tries")),
}
SHOWN_ELSEWHERE = frozenset({"jobId", "midasSendId"})


def describe(entry: dict[str, Any], t: Translate) -> str:
    """A short sentence for the known kinds; ``name=value`` pairs for anything else."""
    detail = entry.get("detail") or {}
    parts: list[str] = []
    if entry.get("reason"):
        parts.append(t("d.reason", reason=entry["reason"]))
    phrase = PHRASES.get(entry.get("kind", ""))
    if phrase and all(detail.get(k) is not None for k in phrase[1]):
        values = {k: detail[k] for k in phrase[1]}
        if "offset" in values:
            values["end"] = values["offset"] + values["rows"]
        parts.append(t(phrase[0], **values))
    elif entry.get("kind") == "state" and detail.get("previousState"):
        parts.append(t("d.from", state=detail["previousState"]))
    else:
        shown = {k: v for k, v in detail.items() if k not in SHOWN_ELSEWHERE}
        if shown:
            parts.append(", ".join(f"{k}={v}" for k, v in shown.items()))
    if detail.get("jobId") is not None:
        parts.append(t("d.job", id=detail["jobId"]))
    return " · ".join(parts)
