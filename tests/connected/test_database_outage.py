"""PostgreSQL stopped for 5 s under writes: clients get 503 with Retry-After (never a 500),
and every request that got its 201 goes on to complete.

The platform runs on its own embedded PostgreSQL here (the suite's shared one must keep
running for every other test). Writers send each request with an Idempotency-Key and retry
it on a 503 as a client would, so the test also counts one model request per key.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from model.tables import model_requests
from nocode.embedded_postgres import EmbeddedPostgres
from tests.connected.whole_platform import ADMIN_PASSWORD, SERVICES, whole_platform
from tests.support import bearer, eventually, free_port

pytestmark = pytest.mark.connected

OUTAGE_S = 5.0
WRITERS = 2
# Consumers retry a failing event until the database is back. The test settings' 3 quick
# attempts give up within a second: during the outage they dead-letter the events being
# consumed (seen: Requested in target, notice and mypage_cqrs). The consumer runtime should
# not count an unreachable database as the event's failure (servicekit.db.database_unavailable).
PATIENT_CONSUMERS = {
    "consumer_max_attempts": 60,
    "consumer_backoff_initial_s": 0.1,
    "consumer_backoff_max_s": 1.0,
}


@dataclass
class Writes:
    answers: list[tuple[int, str | None, float]] = field(
        default_factory=list
    )  # status, Retry-After, when
    created: dict[str, int] = field(default_factory=dict)  # key -> model request id
    failures: list[str] = field(default_factory=list)
    details: Counter[str] = field(default_factory=Counter)  # of the 503s


async def write_until(gateway: httpx.AsyncClient, writes: Writes, stop: asyncio.Event) -> None:
    """POST models one after another; each is retried with its key until it gets a 201."""
    user = bearer("test")
    while not stop.is_set():
        key = str(uuid.uuid4())
        body = {"userId": "test", "modelName": f"outage-{key[:8]}"}
        while True:
            try:
                r = await gateway.post(
                    "/models", json=body, headers={**user, "Idempotency-Key": key}
                )
            except httpx.HTTPError as exc:
                writes.failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.3)
                continue
            writes.answers.append((r.status_code, r.headers.get("retry-after"), time.monotonic()))
            if r.status_code == 201:
                writes.created[key] = r.json()["id"]
                break
            if r.status_code == 503:
                writes.details[r.json()["detail"]] += 1
            else:
                writes.failures.append(f"{r.status_code}: {r.text}")
                break
            await asyncio.sleep(0.3)  # a real client would wait Retry-After; sooner samples more
        await asyncio.sleep(0.2)


def dead_lettered() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "events_dead_lettered"
        for sample in family.samples
        if sample.name == "events_dead_lettered_total"
    )


async def until_ok(call) -> httpx.Response:  # type: ignore[no-untyped-def]
    """Retry a call through the gateway while it answers 503 (its breaker may be open)."""
    deadline = time.monotonic() + 60
    while True:
        response = await call()
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.5)


async def test_postgres_stopped_under_writes_gives_503s_and_every_201_completes(
    topics: str,
) -> None:
    # Not under pytest's tmp dir: a pytest started meanwhile (another session) resets that to
    # 0700, and pg_ctl, running as PostgreSQL's own user when root, could no longer stop it.
    data_dir = Path(tempfile.mkdtemp(prefix="nocode-outage-pg-")) / "data"
    server = EmbeddedPostgres(data_dir, free_port())
    server.start()
    dead_lettered_before = dead_lettered()
    overrides = {name: dict(PATIENT_CONSUMERS) for name in SERVICES}
    overrides["core"] |= {"training_steps": 1}
    try:
        async with whole_platform(server.url(driver="postgresql"), topics, **overrides) as (
            platform,
            gateway,
        ):
            writes, stop = Writes(), asyncio.Event()
            writers = [
                asyncio.create_task(write_until(gateway, writes, stop)) for _ in range(WRITERS)
            ]

            def created_after(moment: float) -> int:
                return sum(1 for s, _, t in writes.answers if s == 201 and t > moment)

            async def three_created_after(moment: float) -> bool:
                return created_after(moment) >= 3

            await eventually(lambda: three_created_after(0.0), what="writes before the outage")
            await asyncio.to_thread(server.stop)
            down_from = time.monotonic()  # from here until the start below, nothing answers
            await asyncio.sleep(1.0)
            # The gateway's user store and the service's readiness say the same meanwhile.
            login = await gateway.post(
                "/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
            )
            ready = await platform.clients["model"].get("/health/ready")
            await asyncio.sleep(OUTAGE_S - (time.monotonic() - down_from))
            down_until = time.monotonic()
            await asyncio.to_thread(server.start)
            await eventually(
                lambda: three_created_after(down_until), timeout_s=60, what="writes after"
            )
            stop.set()
            await asyncio.wait_for(asyncio.gather(*writers), 60)

            ids = sorted(writes.created.values())
            for id in ids:
                key = {"Idempotency-Key": f"approve-{id}"}  # a retried approval is replayed
                approved = await until_ok(
                    lambda id=id, key=key: gateway.put(f"/models/{id}", headers=key)
                )
                assert approved.status_code == 200, approved.text

            async def all_completed() -> bool:
                states = [
                    (await until_ok(lambda id=id: gateway.get(f"/models/{id}"))).json()["state"]
                    for id in ids
                ]
                return set(states) == {"completed"}

            await eventually(all_completed, timeout_s=180, what="every model completed")
            # The key travels through the gateway: a request sent again is answered, not redone.
            key, id = next(iter(writes.created.items()))
            body = {"userId": "test", "modelName": f"outage-{key[:8]}"}
            resent = await gateway.post(
                "/models", json=body, headers={**bearer("test"), "Idempotency-Key": key}
            )
            async with platform.runtimes["model"].engine.connect() as conn:
                rows = await conn.scalar(select(func.count()).select_from(model_requests))
    finally:
        server.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)

    statuses = Counter(s for s, _, _ in writes.answers)
    assert dead_lettered() == dead_lettered_before  # no event given up on meanwhile
    meanwhile = [(s, ra) for s, ra, t in writes.answers if down_from <= t <= down_until]
    unavailable = [(s, ra) for s, ra, _ in writes.answers if s == 503]
    print(
        f"answers {dict(statuses)}; during the outage {Counter(s for s, _ in meanwhile)}; "
        f"created {len(ids)}, model rows {rows}; transport errors {len(writes.failures)}; "
        f"503 details {dict(writes.details)}"
    )
    assert (login.status_code, login.json()) == (503, {"detail": "user database unavailable"})
    assert int(login.headers["retry-after"]) >= 1
    assert ready.status_code == 503 and ready.json()["database"].startswith("unreachable")
    assert not writes.failures, writes.failures[:5]
    assert (resent.status_code, resent.json()["id"]) == (201, id)
    assert resent.headers["idempotent-replayed"] == "true"
    assert set(statuses) <= {201, 503}  # no 500, nor anything else
    assert meanwhile and {s for s, _ in meanwhile} == {503}
    assert all(ra is not None and int(ra) >= 1 for _, ra in unavailable)
    # The service's own answer reached the client through the gateway (before its breaker
    # opened and answered for it).
    assert writes.details["database unavailable, retry later"] >= 1
    # One model request per key, however many times it was sent; each one completed.
    assert len(ids) == len(set(ids)) == len(writes.created) == rows
