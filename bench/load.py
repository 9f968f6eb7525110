"""The load: ``POST /models`` at a concurrency, and full sagas, through the gateway."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

FORM = "application/x-www-form-urlencoded"


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

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


async def sagas(base: str, user: str, admin: str, count: int, concurrency: int) -> Outcome:
    """Full sagas: model requested, approved, trained, completed; a target for it requested,
    approved, extracted (LMS sent by core). Polls the state every 0.2 s."""
    out = Outcome()
    auth = {
        "user": {"Authorization": f"Bearer {user}"},
        "admin": {"Authorization": f"Bearer {admin}"},
    }
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(base) as session:

        async def call(method: str, path: str, who: str, body: dict | None = None) -> dict:
            async with session.request(method, path, json=body, headers=auth[who]) as resp:
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                return await resp.json()

        async def until(path: str, key: str, wanted: str, deadline: float) -> None:
            while (await call("GET", path, "user"))[key] != wanted:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} {key} never {wanted}")
                await asyncio.sleep(0.2)

        async def saga(n: int) -> None:
            async with gate:
                start, deadline = time.perf_counter(), time.monotonic() + 300
                try:
                    body = {"userId": "bench", "modelName": f"saga-{n}"}
                    mid = (await call("POST", "/models", "user", body))["id"]
                    await call("PUT", f"/models/{mid}", "admin")
                    await until(f"/models/{mid}", "state", "completed", deadline)
                    body = {"userId": "bench", "type": "bench", "modelRequestId": mid}
                    tid = (await call("POST", "/targets", "user", body))["id"]
                    await until(f"/targets/{tid}", "modelState", "completed", deadline)
                    await call("PUT", f"/targets/{tid}", "admin")
                    await until(f"/targets/{tid}", "state", "completed", deadline)
                except (RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
                    out.error(str(exc)[:80])
                    return
                out.latencies_ms.append((time.perf_counter() - start) * 1000)
                out.ids.append(mid)

        start = time.perf_counter()
        await asyncio.gather(*(saga(n) for n in range(count)))
        out.duration_s = time.perf_counter() - start
    return out
