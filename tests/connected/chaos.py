"""Helpers for breaking a real ``nocode up`` mid-saga and counting what came out.

:class:`RunningUp` starts ``nocode up`` as a user runs it (its own data directory and
free ports; the external systems are a simulators process of the test's, outside the
platform, so their records survive a restart of the platform). :class:`Sagas` drives
model -> target sagas through the gateway the way a careful client without
idempotency keys would: a call that was not sent is sent again; a create whose
outcome is unknown is looked up before it is tried again. :meth:`Sagas.assert_exact`
counts every effect: each request once, completed; each chat message once; one MIDAS
send per target; one read-model row per request; one job per request (and one LMS job per target).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nocode.services import SERVICES
from notice.messages import said
from tests.support import AUTH_ENV, bearer, free_port

Json = dict[str, Any]
TRANSIENT = {502, 503, 504}
DEADLINE_S = 180.0  # generous: a loaded 2-core machine, a core lease of 10 s, restarts
USER = "test"
ADMIN, DATA_SCIENTIST = bearer(), bearer(USER)


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 in {timeout_s}s"
        time.sleep(0.2)


@dataclass
class RunningUp:
    """One platform (one data directory, one set of ports) and its current ``up``."""

    tmp: Path
    simulators: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("_DATABASE_URL", "_PORT", "_URL")) and k != "KAFKA_BOOTSTRAP_SERVERS"
        }
        self.env = {
            **inherited,
            **AUTH_ENV,
            "NOCODE_DATA_DIR": str(self.tmp / "data"),
            "NOCODE_POSTGRES_PORT": str(free_port()),
            "NOCODE_BROKER_PORT": str(free_port()),
            "NOCODE_RESTART_INITIAL_S": "0.5",
            "VERTICA_URL": f"{self.simulators}/vertica",
            "MIDAS_URL": f"{self.simulators}/midas",
            "CHAT_WEBHOOK_URL": f"{self.simulators}/chat/webhook",
            **{f"{s.env_prefix}_PORT": str(free_port()) for s in SERVICES},
        }

    @property
    def data_dir(self) -> Path:
        return Path(self.env["NOCODE_DATA_DIR"])

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[f'{service.upper()}_PORT']}"

    @property
    def log(self) -> Path:
        return self.tmp / f"up-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nocode", "up"],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while "nocode is up" not in self.output():
            assert self.proc.poll() is None, self.output()[-3000:]
            assert time.monotonic() < deadline, "nocode up did not come up in 120 s"
            time.sleep(0.2)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(90)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def supervisor_lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if line.startswith("nocode: ")]

    def placement(self) -> Json:
        return json.loads((self.data_dir / "platform.json").read_text())

    def process(self, name: str) -> Json:
        return self.placement()["processes"][name]


STAGES = (
    "new",
    "model requested",
    "model approved",
    "target requested",
    "target approved",
    "completed",
)


@dataclass
class Saga:
    name: str
    model_id: int | None = None
    target_id: int | None = None
    stage: str = "new"

    def reached(self, stage: str) -> bool:
        return STAGES.index(self.stage) >= STAGES.index(stage)


class Sagas:
    """Every saga driven on one platform, and the exact effects they must leave."""

    def __init__(self, gateway: str, simulators: str) -> None:
        self.gateway = httpx.AsyncClient(base_url=gateway, timeout=15)
        self.simulators = simulators
        self.all: list[Saga] = []

    async def close(self) -> None:
        await self.gateway.aclose()

    # --- driving ---------------------------------------------------------------------

    async def call(self, method: str, path: str, who: dict[str, str], **kw: Any) -> httpx.Response:
        """A call retried while it cannot be answered (only idempotent ones come here)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                response = await self.gateway.request(method, path, headers=who, **kw)
                if response.status_code not in TRANSIENT:
                    return response
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{method} {path}: no answer in {DEADLINE_S}s"
            await asyncio.sleep(0.2)

    async def create(
        self, path: str, data: Json, find: Callable[[], Awaitable[Json | None]]
    ) -> Json:
        """POST once; when the outcome is unknown, look it up before posting again."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                response = await self.gateway.post(path, data=data, headers=DATA_SCIENTIST)
                if response.status_code == 201:
                    return response.json()
                assert response.status_code in TRANSIENT, response.text
            except httpx.ConnectError:  # not sent: nothing happened
                await asyncio.sleep(0.2)
                continue
            except httpx.TransportError:
                pass  # sent, answer lost
            if (found := await find()) is not None:
                return found
            assert time.monotonic() < deadline, f"POST {path}: not created in {DEADLINE_S}s"
            await asyncio.sleep(0.3)

    async def listing(self, path: str) -> list[Json]:
        response = await self.call("GET", path, ADMIN, params={"limit": 1000})
        assert response.status_code == 200, response.text
        return response.json()

    async def until(self, path: str, done: Callable[[Json], bool], what: str) -> Json:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            response = await self.call("GET", path, ADMIN)
            if response.status_code == 200 and done(body := response.json()):
                return body
            assert time.monotonic() < deadline, f"{what}: {path} is {response.text}"
            await asyncio.sleep(0.3)

    async def approve(self, path: str) -> None:
        response = await self.call("PUT", path, ADMIN)
        # 409 "already approved" (or further): an earlier try went through, answer lost.
        ok = response.status_code == 200 or (
            response.status_code == 409
            and response.json().get("currentState") in {"approved", "inProgress", "completed"}
        )
        assert ok, f"PUT {path}: {response.status_code} {response.text}"

    async def run(self, saga: Saga) -> None:
        async def model_named() -> Json | None:
            rows = await self.listing("/models")
            return next((m for m in rows if m["modelName"] == saga.name), None)

        model = await self.create("/models", {"userId": USER, "modelName": saga.name}, model_named)
        saga.model_id, saga.stage = model["id"], "model requested"
        await self.approve(f"/models/{saga.model_id}")
        saga.stage = "model approved"
        done = await self.until(
            f"/models/{saga.model_id}", lambda m: m["state"] in {"completed", "failed"}, "training"
        )
        assert done["state"] == "completed", done

        async def target_of_model() -> Json | None:
            rows = await self.listing("/targets")
            return next((t for t in rows if t["modelRequestId"] == saga.model_id), None)

        data = {"userId": USER, "type": "chaos", "modelRequestId": saga.model_id}
        target = await self.create("/targets", data, target_of_model)
        saga.target_id, saga.stage = target["id"], "target requested"
        await self.until(
            f"/targets/{saga.target_id}",
            lambda t: t["modelState"] == "completed",
            "target to learn the model completed",
        )
        await self.approve(f"/targets/{saga.target_id}")
        saga.stage = "target approved"
        done = await self.until(
            f"/targets/{saga.target_id}",
            lambda t: t["state"] in {"completed", "failed", "canceled"},
            "extraction",
        )
        assert done["state"] == "completed", done
        saga.stage = "completed"

    def start(self, label: str, count: int, spacing_s: float = 1.0) -> list[asyncio.Task[None]]:
        """``count`` sagas, one every ``spacing_s``, so a fault lands on them at every stage."""
        tag = uuid.uuid4().hex[:6]
        batch = [Saga(f"{label}-{i}-{tag}") for i in range(count)]
        self.all.extend(batch)

        async def later(i: int, saga: Saga) -> None:
            await asyncio.sleep(i * spacing_s)
            await self.run(saga)

        return [asyncio.create_task(later(i, s)) for i, s in enumerate(batch)]

    # --- counting --------------------------------------------------------------------

    def expected_chat(self) -> Counter[str]:
        texts: Counter[str] = Counter()
        for s in self.all:
            # The chat shows names as notice escapes them (``mypage_cqrs`` has a look-alike _).
            model = f'Model request #{s.model_id} "{said(s.name)}" by {USER}'
            target = f"Target request #{s.target_id} (chaos, model #{s.model_id}) by {USER}"
            changes = ["new → requested", "requested → approved"]
            for change in [*changes, "approved → inProgress", "inProgress → completed"]:
                texts[f"{model}: {change}"] += 1
            for change in [*changes, "approved → completed"]:
                texts[f"{target}: {change}"] += 1
        return texts

    async def effects(self) -> Json:
        async with httpx.AsyncClient(base_url=self.simulators, timeout=10) as sim:
            chat = [m["text"] for m in (await sim.get("/chat/messages")).json()]
            sends = (await sim.get("/midas/sends")).json()
        return {
            "chat": chat,
            "sends": sends,
            "rows": await self.listing("/myRequests"),
            "jobs": await self.listing("/cores"),
        }

    async def assert_exact(self, settle_s: float = 1.5) -> Json:
        """Wait for every effect of every saga, then count each exactly; returns the counts."""
        assert all(s.stage == "completed" for s in self.all), [s for s in self.all]
        n = len(self.all)
        chat_expected = 8 * n  # 4 model changes, 3 target changes, 1 LMS message

        def complete(e: Json) -> bool:
            sent = [r for r in e["rows"] if r["kind"] == "target" and r["lmsStatus"] == "sent"]
            done = [r for r in e["rows"] if r["state"] == "completed"]
            return (
                len(e["chat"]) >= chat_expected
                and len(e["sends"]) >= n
                and len(done) >= 2 * n
                and len(sent) >= n
            )

        deadline = time.monotonic() + DEADLINE_S
        while not complete(effects := await self.effects()):
            assert time.monotonic() < deadline, _counts(effects)
            await asyncio.sleep(0.5)
        await asyncio.sleep(settle_s)  # anything doubled late shows up now
        effects = await self.effects()

        chat = Counter(effects["chat"])
        lms = Counter(t for t in chat.elements() if ": LMS bulk send accepted" in t)
        assert chat - lms == self.expected_chat(), _diff(chat - lms, self.expected_chat())
        # "Target request #9 (chaos, ...)", or "Target request #9:" when notice met core's
        # LmsSent before the target's own events (after a restart of notice).
        lms_targets = sorted(int(re.findall(r"#(\d+)", t)[0]) for t in lms.elements())
        assert lms_targets == sorted(s.target_id for s in self.all), lms
        keys = [send["idempotencyKey"] for send in effects["sends"]]
        assert sorted(keys) == sorted(f"target-{s.target_id}" for s in self.all)
        rows = {r["id"]: r for r in effects["rows"]}
        assert len(rows) == len(effects["rows"]) == 2 * n
        for s in self.all:
            assert rows[f"model-{s.model_id}"]["state"] == "completed", rows
            target = rows[f"target-{s.target_id}"]
            assert target["state"] == "completed" and target["lmsStatus"] == "sent", target
        jobs = Counter((j["kind"], str(j["requestId"]), j["state"]) for j in effects["jobs"])
        expected_jobs = Counter(("model", str(s.model_id), "completed") for s in self.all)
        for kind in ("target", "lms"):  # extraction, then the MIDAS send
            expected_jobs += Counter((kind, str(s.target_id), "completed") for s in self.all)
        assert jobs == expected_jobs, jobs
        return _counts(effects)


def _counts(effects: Json) -> Json:
    return {k: len(v) for k, v in effects.items()}


def _diff(got: Counter[str], want: Counter[str]) -> str:
    return f"missing {dict(want - got)}; extra {dict(got - want)}"
