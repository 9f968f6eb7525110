"""``nocode demo``: the seed's scenario, driven through the gateway of a running platform.

It prints each step as it happens, with the events seen on the topics and the
chat messages notice delivered, then checks the outcome and says what held:
model requested → approved → trained (progress) → completed → target requested →
approved → completed → LMS sent; a second model cancelled mid-training (no
completion goes out); a third rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import EVENT_TOPICS
from nocode.errors import UNREACHABLE_HINT, CliError
from nocode.keys import issuer as local_issuer
from nocode.launcher import LauncherSettings
from servicekit.auth import TokenIssuer

Json = dict[str, Any]


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    gateway_url: str = Field("http://127.0.0.1:8080", validation_alias="NOCODE_GATEWAY_URL")
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    user: str = Field("test", validation_alias="NOCODE_DEMO_USER")
    step_timeout_s: float = Field(60.0, validation_alias="NOCODE_DEMO_STEP_TIMEOUT_S")


@dataclass
class Demo:
    settings: DemoSettings
    out: Callable[[str], None] = print
    signer: TokenIssuer | None = None  # default: the local platform's key (`nocode token`)
    started: float = field(default_factory=time.monotonic)
    events: list[tuple[str, Json]] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        signer = self.signer or local_issuer(LauncherSettings().data_dir)
        # The data scientist acts on their own requests; the admin approves and rejects.
        self.user = {"Authorization": f"Bearer {signer.issue(self.settings.user, ['user'])}"}
        self.admin = {"Authorization": f"Bearer {signer.issue('demo-admin', ['admin'])}"}

    def say(self, kind: str, text: str) -> None:
        self.out(f"  [{time.monotonic() - self.started:6.1f}s] {kind:<6} {text}")

    def step(self, text: str) -> None:
        self.out(f"\n▶ {text}")

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))

    # Watching the platform

    async def wait_watching(self, ready: asyncio.Event, watcher: asyncio.Task[None]) -> None:
        """Until the event watcher reads every partition; its own error if it cannot."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 15)
        if ready.is_set():
            return
        if watcher.done() and watcher.exception() is not None:
            raise watcher.exception()  # type: ignore[misc]
        bootstrap = self.settings.kafka_bootstrap_servers
        raise CliError(f"the broker at {bootstrap} did not answer within 15 s", UNREACHABLE_HINT)

    async def watch_events(self, ready: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False
        )
        try:
            await consumer.start()
            await consumer._client.force_metadata_update()
            tps = [
                TopicPartition(topic, p)
                for topic in EVENT_TOPICS
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the end offsets now, before the scenario starts
                await consumer.position(tp)
            ready.set()
            async for record in consumer:
                value = orjson.loads(record.value)
                self.events.append((record.topic, value))
                self.say("event", f"{record.topic:<13} {describe_event(value)}")
        finally:
            await consumer.stop()

    async def watch_chat(self, client: httpx.AsyncClient) -> None:
        seen: set[object] | None = None
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                resp = await client.get(
                    "/notices", params={"userId": self.settings.user}, headers=self.user
                )
                if resp.status_code == 200:
                    notices = resp.json()
                    if seen is None:
                        seen = {n["id"] for n in notices}
                    for n in sorted(notices, key=lambda n: n["id"]):
                        if n["id"] not in seen and n.get("status") == "sent":
                            seen.add(n["id"])
                            self.say("chat", n["text"])
            await asyncio.sleep(0.3)

    # Talking to the platform

    async def call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        admin: bool = False,
    ) -> Json:
        resp = await client.request(
            method, path, json=body, headers=self.admin if admin else self.user
        )
        shown = f"{method} {path}" + (f" {orjson.dumps(body).decode()}" if body else "")
        if resp.status_code >= 400:
            raise DemoFailed(f"{shown} answered {resp.status_code}: {resp.text}")
        data = resp.json()
        state = data.get("state") if isinstance(data, dict) else None
        self.say("http", f"{shown} → {resp.status_code}" + (f" ({state})" if state else ""))
        return data

    async def until(
        self, what: str, probe: Callable[[], Awaitable[bool]], timeout_s: float | None = None
    ) -> None:
        deadline = time.monotonic() + (timeout_s or self.settings.step_timeout_s)
        while not await probe():
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out waiting until {what}")
            await asyncio.sleep(0.2)

    async def state_of(self, client: httpx.AsyncClient, path: str, admin: bool = False) -> Json:
        resp = await client.get(path, headers=self.admin if admin else self.user)
        resp.raise_for_status()
        return resp.json()

    async def wait_state(
        self, client: httpx.AsyncClient, path: str, states: set[str], show_progress: bool = False
    ) -> Json:
        last: Json = {}
        shown_progress = -1

        async def reached() -> bool:
            nonlocal last, shown_progress
            last = await self.state_of(client, path)
            progress = last.get("progress", 0)
            if show_progress and progress != shown_progress and last["state"] == "inProgress":
                shown_progress = progress
                self.say("state", f"{path}: inProgress, step {last['step']}/{last['totalSteps']}")
            return last["state"] in states

        await self.until(f"{path} is {' or '.join(sorted(states))}", reached)
        self.say("state", f"{path}: {last['state']}")
        return last

    def seen(self, event_type: str, request_id: int) -> bool:
        return any(
            v.get("eventType") == event_type
            and str(v.get("requestId", v.get("id"))) == str(request_id)
            for _, v in self.events
        )

    # The scenario

    async def run(self) -> bool:
        s = self.settings
        self.out(
            f"nocode demo: {s.gateway_url} as user {s.user!r}, "
            f"events from {s.kafka_bootstrap_servers}"
        )
        ready = asyncio.Event()
        async with httpx.AsyncClient(base_url=s.gateway_url, timeout=10) as client:
            watchers = [
                asyncio.create_task(self.watch_events(ready)),
                asyncio.create_task(self.watch_chat(client)),
            ]
            try:
                await self.wait_watching(ready, watchers[0])
                await self.scenario(client)
                await asyncio.sleep(1.5)  # let the last events and chat messages arrive
            except DemoFailed as exc:
                self.out(f"\n✗ demo stopped: {exc}")
                self.check(str(exc), False)
            finally:
                for task in watchers:
                    task.cancel()
                for task in watchers:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await self.summary(client)
        return all(ok for _, ok in self.checks)

    async def scenario(self, client: httpx.AsyncClient) -> None:
        user, stamp = self.settings.user, time.strftime("%H%M%S")

        self.step("1. A data scientist asks for a model; an admin approves it; core trains it")
        model = await self.call(
            client,
            "POST",
            "/models",
            {"userId": user, "state": "request", "modelName": f"Demo-{stamp}"},
        )
        mid = model["id"]
        await self.call(client, "PUT", "/models", {"id": mid}, admin=True)  # the seed's way
        done = await self.wait_state(client, f"/models/{mid}", {"completed", "failed"}, True)
        self.check(f"model request {mid} completed", done["state"] == "completed")

        self.step("2. A target extraction with that model; approved; extracted; LMS sent by MIDAS")
        target = await self.call(
            client,
            "POST",
            "/targets",
            {"userId": user, "type": "vip-customers", "modelRequestId": mid},
        )
        tid = target["id"]

        async def target_knows() -> bool:
            # target learns of the completion from model.events, a moment after model.
            return (await self.state_of(client, f"/targets/{tid}"))["modelState"] == "completed"

        await self.until(f"target {tid} knows model {mid} is completed", target_knows)
        await self.call(client, "PUT", "/targets", {"id": tid}, admin=True)
        done = await self.wait_state(client, f"/targets/{tid}", {"completed", "failed", "canceled"})
        self.check(f"target request {tid} completed", done["state"] == "completed")

        async def lms_sent() -> bool:
            return self.seen("LmsSent", tid) or self.seen("LmsFailed", tid)

        await self.until(f"MIDAS answered for target {tid}", lms_sent)
        self.check(f"LMS bulk send accepted for target {tid}", self.seen("LmsSent", tid))

        self.step("3. A second model, cancelled while it trains: no completion may go out")
        second = await self.call(
            client, "POST", "/models", {"userId": user, "modelName": f"Demo-{stamp}-cancelled"}
        )
        sid = second["id"]
        await self.call(client, "PUT", f"/models/{sid}", admin=True)

        async def training() -> bool:
            return (await self.state_of(client, f"/models/{sid}"))["step"] >= 1

        await self.until(f"model {sid} has trained a step", training)
        await self.call(client, "PUT", f"/models/{sid}/cancel", {"reason": "demo: changed my mind"})
        await self.until(
            f"core stopped the job of model {sid}", lambda: self.job_ended(client, sid)
        )
        await asyncio.sleep(1.0)  # a completion, if one were coming, would be here by now
        final = await self.state_of(client, f"/models/{sid}")
        self.say("state", f"/models/{sid}: {final['state']}")
        self.check(
            f"model request {sid} stays requestCanceled", final["state"] == "requestCanceled"
        )
        self.check(
            f"no ModelCompleted for model request {sid}", not self.seen("ModelCompleted", sid)
        )

        self.step("4. A third model, rejected by the admin")
        third = await self.call(
            client, "POST", "/models", {"userId": user, "modelName": f"Demo-{stamp}-rejected"}
        )
        rid = third["id"]
        rejected = await self.call(
            client,
            "PUT",
            f"/models/{rid}/reject",
            {"reason": "demo: not enough training data"},
            admin=True,
        )
        self.check(f"model request {rid} rejected", rejected["state"] == "rejected")

    async def job_ended(self, client: httpx.AsyncClient, request_id: int) -> bool:
        jobs = await self.state_of(client, "/cores?kind=model", admin=True)
        return any(
            str(j["requestId"]) == str(request_id)
            and j["state"] in {"canceled", "completed", "failed"}
            for j in jobs
        )

    async def summary(self, client: httpx.AsyncClient) -> None:
        self.out("\nMy requests (the CQRS read model):")
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            rows = (
                await client.get(
                    "/myRequests", params={"userId": self.settings.user}, headers=self.user
                )
            ).json()
            for row in rows[-6:]:
                extra = f" lms={row['lmsStatus']}" if row.get("lmsStatus") else ""
                reason = f" ({row['reason']})" if row.get("reason") else ""
                self.out(
                    f"  {row['id']:<12} {row['name']:<28} {row['state']:<16} "
                    f"{row['progress']:>3}%{extra}{reason}"
                )
        self.out("\nChecks:")
        for what, ok in self.checks:
            self.out(f"  {'✓' if ok else '✗'} {what}")


class DemoFailed(Exception):
    pass


def describe_event(value: Json) -> str:
    kind = value.get("eventType", "?")
    subject = (
        f"request {value['requestId']} (job {value['id']})"
        if "requestId" in value
        else f"#{value.get('id')}"
    )
    details = [value.get("state", "")]
    if "step" in value and "totalSteps" in value:
        details.append(f"step {value['step']}/{value['totalSteps']}")
    if value.get("reason"):
        details.append(f"reason: {value['reason']}")
    return f"{kind:<18} {subject:<22} {' '.join(d for d in details if d)}"


def run(settings: DemoSettings | None = None) -> bool:
    return asyncio.run(Demo(settings or DemoSettings()).run())
