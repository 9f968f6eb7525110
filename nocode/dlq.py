"""``nocode dlq list|redrive``: what is stuck, and trying it again, as an admin.

It talks to the gateway with an admin token signed the way ``nocode token`` signs
(``JWT_PRIVATE_KEY``, else the platform's local key), under each service's prefix:
dead letters on every consuming service (``{prefix}/ops/dead-letters``), and each
service's own failed things (``{prefix}/ops/failed``: core's jobs and LMS sends,
notice's chat messages). ``redrive`` is a dry run unless ``--yes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson

from contracts.topics import CONSUMING_SERVICES
from nocode.services import GATEWAY_ROUTES

PREFIX = {service: prefix for prefix, service in GATEWAY_ROUTES.items()}
HAS_FAILED = ("core", "notice")  # services with failed things of their own
WHAT = ("dead-letters", "failed")


class DlqError(Exception):
    """The gateway could not be asked, or refused: the message says why."""


@dataclass(frozen=True)
class Filters:
    ids: tuple[int, ...] = ()
    event_type: str | None = None  # dead letters: a part of the CloudEvents type
    kind: str | None = None  # failed things: core's job kind, notice's request kind

    def params(self, what: str) -> list[tuple[str, str]]:
        params = [("id", str(i)) for i in self.ids]
        if what == "dead-letters" and self.event_type:
            params.append(("eventType", self.event_type))
        if what == "failed" and self.kind:
            params.append(("kind", self.kind))
        return params


@dataclass(frozen=True)
class Row:
    service: str
    what: str  # dead-letter | failed
    id: int
    type: str  # the event type, or the failed thing's kind
    state: str
    detail: str  # the error, or what it is about
    outcome: str = ""  # after a re-drive (or what a dry run would do)


def targets(services: Iterable[str], what: Iterable[str]) -> list[tuple[str, str]]:
    """(service, what) pairs to ask, in a stable order."""
    chosen = list(services) or list(CONSUMING_SERVICES)
    unknown = sorted(set(chosen) - set(CONSUMING_SERVICES))
    if unknown:
        raise DlqError(f"unknown service {', '.join(unknown)}; one of {CONSUMING_SERVICES}")
    kinds = list(what) or list(WHAT)
    return [(s, w) for s in chosen for w in kinds if w == "dead-letters" or s in HAS_FAILED]


def _dead_letter(service: str, d: dict[str, Any], outcome: str = "") -> Row:
    return Row(service, "dead-letter", d["id"], d["eventType"], d["status"], d["error"], outcome)


def _failed(service: str, f: dict[str, Any], outcome: str = "") -> Row:
    detail = f["subject"] + (f" — {f['error']}" if f.get("error") else "")
    return Row(service, "failed", f["id"], f["kind"], f["state"], detail, outcome)


async def _call(
    client: httpx.AsyncClient, method: str, path: str, params: list[tuple[str, str]]
) -> Any:
    try:
        response = await client.request(method, path, params=params)
    except httpx.HTTPError as exc:
        raise DlqError(f"{client.base_url}{path}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise DlqError(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


async def list_stuck(
    client: httpx.AsyncClient, pairs: list[tuple[str, str]], filters: Filters
) -> list[Row]:
    rows: list[Row] = []
    for service, what in pairs:
        path = f"{PREFIX[service]}/ops/{what}"
        for item in await _call(client, "GET", path, filters.params(what)):
            rows.append(
                _dead_letter(service, item) if what == "dead-letters" else _failed(service, item)
            )
    return rows


async def redrive(
    client: httpx.AsyncClient, pairs: list[tuple[str, str]], filters: Filters, *, apply: bool
) -> list[Row]:
    rows: list[Row] = []
    for service, what in pairs:
        path = f"{PREFIX[service]}/ops/{what}/redrive"
        params = [*filters.params(what), ("dryRun", "false" if apply else "true")]
        report = await _call(client, "POST", path, params)
        for d in report["deadLetters"]:
            rows.append(_dead_letter(service, d["deadLetter"], d["outcome"]))
        for f in report["failed"]:
            rows.append(_failed(service, f["item"], f["outcome"]))
    return rows


def render(rows: list[Row], *, mode: str) -> str:
    """``mode``: list, dry-run or applied."""
    if not rows:
        return {
            "list": "nothing stuck: no parked dead letters, no failed jobs, sends or messages",
            "dry-run": "nothing to re-drive",
            "applied": "nothing was re-driven",
        }[mode]
    lines = []
    for r in rows:
        outcome = f"  → {r.outcome}" if r.outcome else ""
        detail = r.detail if len(r.detail) <= 90 else r.detail[:87] + "..."
        lines.append(
            f"{r.service:<12} {r.what:<11} {r.id:>6}  {r.type:<30} {r.state:<9}{outcome}\n"
            f"{'':<32}{detail}"
        )
    if mode == "dry-run":
        lines.append(
            f"\ndry run: nothing changed. `nocode dlq redrive --yes` (same filters) "
            f"re-drives these {len(rows)}."
        )
    if mode == "applied":
        done = sum(r.outcome in ("applied", "skipped", "redriven") for r in rows)
        lines.append(f"\nre-driven: {done} of {len(rows)}")
    return "\n".join(lines)


def main(
    *,
    gateway_url: str,
    token: str,
    services: list[str],
    what: list[str],
    filters: Filters,
    action: str,  # list | redrive
    apply: bool = False,
    as_json: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """What ``nocode dlq`` does; exit 0, or 1 when a re-drive failed, 2 when it could not ask."""

    async def run() -> list[Row]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as client:
            pairs = targets(services, what)
            if action == "list":
                return await list_stuck(client, pairs, filters)
            return await redrive(client, pairs, filters, apply=apply)

    try:
        rows = asyncio.run(run())
    except DlqError as exc:
        out(f"nocode dlq: {exc}")
        return 2
    mode = "list" if action == "list" else ("applied" if apply else "dry-run")
    if as_json:
        out(orjson.dumps({"mode": mode, "items": [asdict(r) for r in rows]}).decode())
    else:
        out(render(rows, mode=mode))
    failed = [r for r in rows if r.outcome in ("failed", "conflict")]
    return 1 if failed else 0
