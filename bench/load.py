"""The load: ``POST /models`` at a concurrency, and full sagas, through the gateway.

A saga's requests and approvals go through the gateway; its waits (model completed, the
target's view of it completed, target completed) read the services' databases, one query
per database every 0.2 s for all the sagas in flight (:class:`StateWatch`). A client that
polls ``GET /models/{id}`` instead pays per poll what :func:`status_gets` measures; the
benchmark prints both figures, so the saga's own cost and a poll's are read apart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import procs

FORM = "application/x-www-form-urlencoded"


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    targets: list[int] = field(default_factory=list)  # sagas: their targets
    polls: int = 0  # sagas: the state watch's polls

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def post_models(
    base: str, token: str | None, requests: int, concurrency: int, tag: str
) -> Outcome:
    """``requests`` form posts (the seed's) by ``concurrency`` workers; 201 is a success."""
    out, sent = Outcome(), 0
    headers = {"Content-Type": FORM}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal sent
            while sent < requests:
                sent += 1
                body = f"userId=bench&modelName={tag}-{sent}"
                start = time.perf_counter()
                try:
                    async with session.post("/models", data=body) as resp:
                        payload = await resp.json(content_type=None)
                        if resp.status != 201:
                            out.error(str(resp.status))
                            continue
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    out.error(type(exc).__name__)
                    continue
                out.latencies_ms.append((time.perf_counter() - start) * 1000)
                out.ids.append(int(payload["id"]))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out.duration_s = time.perf_counter() - start
    return out


async def spaced_posts(base: str, token: str, count: int, gap_s: float) -> list[int]:
    """One POST at a time, ``gap_s`` apart: the idle platform's event hops."""
    ids = []
    for _ in range(count):
        out = await post_models(base, token, 1, 1, "idle")
        ids += out.ids
        await asyncio.sleep(gap_s)
    return ids


class StateWatch:
    """Waits for stored states without the platform's HTTP path: one query per database
    every ``interval_s`` for every waiter at once (the model's ``model_requests``; the
    target's ``targets`` joined with its view of the model), not a GET per saga per poll.
    What it costs is the bench's (``procs.CLIENT``), not the platform's: a few indexed
    reads per interval for all the sagas in flight."""

    def __init__(self, url: Callable[[str], str], interval_s: float = 0.2) -> None:
        self.url = url
        self.interval_s = interval_s
        self.waiting: dict[tuple[str, int, str, str], list[asyncio.Future[None]]] = {}
        self.polls = 0
        self.stopped = asyncio.Event()

    async def until(self, what: str, ident: int, key: str, wanted: str) -> None:
        """Until ``what`` ("model" or "target") ``ident``'s ``key`` is ``wanted``."""
        fut = asyncio.get_running_loop().create_future()
        self.waiting.setdefault((what, ident, key, wanted), []).append(fut)
        await fut

    async def run(self) -> None:
        model = await procs.client(self.url("model"), "state watch")
        target = await procs.client(self.url("target"), "state watch")
        while True:  # stopped between polls, never in one: the connections are kept
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.interval_s)
            if self.stopped.is_set():
                return
            if self.waiting:
                await self._poll(model, target)

    async def _poll(self, model: Any, target: Any) -> None:
        self.polls += 1
        states: dict[tuple[str, int, str], str] = {}
        models = [i for (w, i, _, _) in self.waiting if w == "model"]
        targets = [i for (w, i, _, _) in self.waiting if w == "target"]
        if models:
            rows = await model.fetch(
                "SELECT id, state FROM model_requests WHERE id = ANY($1::bigint[])", models
            )
            states |= {("model", r["id"], "state"): r["state"] for r in rows}
        if targets:
            rows = await target.fetch(
                "SELECT t.id, t.state, m.state AS model_state FROM targets t"
                " LEFT JOIN model_requests m ON m.model_request_id = t.model_request_id"
                " WHERE t.id = ANY($1::bigint[])",
                targets,
            )
            for r in rows:
                states[("target", r["id"], "state")] = r["state"]
                states[("target", r["id"], "modelState")] = r["model_state"]
        for waiter in list(self.waiting):
            if states.get(waiter[:3]) == waiter[3]:
                for fut in self.waiting.pop(waiter):
                    if not fut.done():
                        fut.set_result(None)


async def sagas(
    base: str, user: str, admin: str, count: int, concurrency: int, url: Callable[[str], str]
) -> Outcome:
    """Full sagas: model requested, approved, trained, completed; a target for it requested,
    approved, extracted (LMS sent by core). The requests and approvals go through the
    gateway; the waits for a state read the services' databases (:class:`StateWatch`), so
    the figure is the saga's own cost, not a client's polling (see :func:`status_gets`)."""
    out = Outcome()
    auth = {
        "user": {"Authorization": f"Bearer {user}"},
        "admin": {"Authorization": f"Bearer {admin}"},
    }
    gate = asyncio.Semaphore(concurrency)
    watch = StateWatch(url)
    watching = asyncio.create_task(watch.run())
    async with aiohttp.ClientSession(base) as session:

        async def call(method: str, path: str, who: str, body: dict | None = None) -> dict:
            async with session.request(method, path, json=body, headers=auth[who]) as resp:
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                return await resp.json()

        async def saga(n: int) -> None:
            async with gate:
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(300):
                        body = {"userId": "bench", "modelName": f"saga-{n}"}
                        mid = (await call("POST", "/models", "user", body))["id"]
                        await call("PUT", f"/models/{mid}", "admin")
                        await watch.until("model", mid, "state", "completed")
                        body = {"userId": "bench", "type": "bench", "modelRequestId": mid}
                        tid = (await call("POST", "/targets", "user", body))["id"]
                        await watch.until("target", tid, "modelState", "completed")
                        await call("PUT", f"/targets/{tid}", "admin")
                        await watch.until("target", tid, "state", "completed")
                except (RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
                    out.error(str(exc)[:80] or type(exc).__name__)
                    return
                out.latencies_ms.append((time.perf_counter() - start) * 1000)
                out.ids.append(mid)
                out.targets.append(tid)

        start = time.perf_counter()
        try:
            await asyncio.gather(*(saga(n) for n in range(count)))
        finally:
            watch.stopped.set()
            await watching
        out.duration_s = time.perf_counter() - start
        out.polls = watch.polls
    return out


async def status_gets(
    base: str, user: str, model_ids: list[int], target_ids: list[int], count: int, concurrency: int
) -> Outcome:
    """``count`` status GETs through the gateway, as a polling client makes them: half
    ``GET /models/{id}``, half ``GET /targets/{id}`` (of finished sagas), ``concurrency`` at
    a time. Its CPU per GET is what each poll of a client costs the platform."""
    out, sent = Outcome(), 0
    paths = [f"/models/{i}" for i in model_ids] + [f"/targets/{i}" for i in target_ids]
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {user}"}
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal sent
            while sent < count:
                path = paths[sent % len(paths)]
                sent += 1
                start = time.perf_counter()
                try:
                    async with session.get(path) as resp:
                        await resp.read()
                        if resp.status != 200:
                            out.error(str(resp.status))
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    out.error(type(exc).__name__)
                    continue
                out.latencies_ms.append((time.perf_counter() - start) * 1000)
                out.ids.append(sent)

        start = time.perf_counter()
        if paths:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        out.duration_s = time.perf_counter() - start
    return out
