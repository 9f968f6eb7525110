"""Metrics as Prometheus would scrape them: each service's and the gateway's live
``/metrics`` during a saga run through the gateway.

All services run in this one process and share prometheus_client's registry, so
every scrape shows every service's series and counters carry what earlier tests
counted: values are compared as deltas, filtered by the ``service``/``group`` labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.base import contract_for
from contracts.topics import CORE_EVENTS, EVENT_TOPICS, MODEL_EVENTS, TARGET_EVENTS
from servicekit.consumer import applies
from tests.connected.test_saga import chat_texts, model_known_completed, state_is
from tests.connected.whole_platform import SERVICES, Platform, whole_platform
from tests.infra.test_infra_monitoring import SUFFIXES, used_names
from tests.support import eventually, topic_values

pytestmark = pytest.mark.connected

ENDPOINTS = (*SERVICES, "gateway")


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` page, parsed."""

    declared: frozenset[str]  # every name it declares (HELP/TYPE), as PromQL writes it
    samples: tuple[tuple[str, dict[str, str], float], ...]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        declared: set[str] = set()
        samples = []
        for family in text_string_to_metric_families(text):
            declared |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
            samples += [(s.name, s.labels, s.value) for s in family.samples]
        return cls(frozenset(declared), tuple(samples))

    @property
    def series(self) -> set[str]:
        """Names that have at least one series (a labelled metric needs an observation)."""
        return {name for name, _, _ in self.samples}

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s series whose labels include ``labels``."""
        return sum(v for n, ls, v in self.samples if n == name and labels.items() <= ls.items())


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/metrics")  # no token: Prometheus has none
    assert response.status_code == 200, response.text
    return Scrape.parse(response.text)


async def scrape_all(platform: Platform, gateway: httpx.AsyncClient) -> dict[str, Scrape]:
    scrapes = {name: await scrape(platform.url(name)) for name in SERVICES}
    scrapes["gateway"] = await scrape(str(gateway.base_url))
    return scrapes


@pytest.fixture
async def saga(
    postgres_admin_url: str, topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    async with whole_platform(postgres_admin_url, topics) as running:
        yield running


async def model_then_target(gateway: httpx.AsyncClient) -> tuple[int, int]:
    """Model requested → approved → completed, then target requested → approved →
    completed (and its LMS send); returns both ids once the read model shows the end."""
    created = await gateway.post("/models", json={"userId": "test", "modelName": "M"})
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    assert (await gateway.put(f"/models/{mid}")).status_code == 200
    await eventually(lambda: state_is(gateway, f"/models/{mid}", "completed"), what="training")
    target = await gateway.post(
        "/targets", json={"userId": "test", "type": "vip", "modelRequestId": mid}
    )
    assert target.status_code == 201, target.text
    tid = target.json()["id"]
    await eventually(lambda: model_known_completed(gateway, tid), what="target to learn")
    assert (await gateway.put(f"/targets/{tid}")).status_code == 200
    await eventually(lambda: state_is(gateway, f"/targets/{tid}", "completed"), what="extraction")

    async def lms_on_read_model() -> bool:
        rows = (await gateway.get("/myRequests", params={"userId": "test"})).json()
        return any(r["id"] == f"target-{tid}" and r["lmsStatus"] == "sent" for r in rows)

    await eventually(lms_on_read_model, what="the LMS send on the read model")
    return mid, tid


def type_of(topic: str, value: dict) -> str:
    """The CloudEvents type of a record's value on ``topic``."""
    return f"nocode.{topic.split('.')[0]}.{value['eventType']}"


async def test_after_a_saga_each_service_counts_it(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga
    before = await scrape_all(platform, gateway)
    await model_then_target(gateway)

    values = {topic: await topic_values(platform.bootstrap, topic) for topic in EVENT_TOPICS}
    on_topic = {topic: [type_of(topic, v) for v in values[topic]] for topic in EVENT_TOPICS}
    assert [t.rsplit(".", 1)[1] for t in on_topic[MODEL_EVENTS]] == [
        "Requested",
        "Approved",
        *["StateChanged"] * 2,  # inProgress, completed (the steps are core's)
    ]
    assert len(on_topic[TARGET_EVENTS]) == 3 and len(on_topic[CORE_EVENTS]) == 6
    # Every subscriber, by consumer group: what it must have applied, and ignored (a type
    # it has no handler for, or an event its handler does not act on: a training step).
    expected: dict[tuple[str, str, str], Counter[str]] = {}
    for name in SERVICES:
        for consumer in platform.runtimes[name].consumers:
            for topic in consumer.topics:
                for ce_type, value in zip(on_topic[topic], values[topic], strict=True):
                    handler = consumer.handlers.get(ce_type)
                    event = contract_for(ce_type).model_validate(value)  # type: ignore[union-attr]
                    acts = handler is not None and applies(handler, event)
                    key = (consumer.group_id, topic, ce_type)
                    expected.setdefault(key, Counter())["applied" if acts else "ignored"] += 1
    assert {g for g, *_ in expected} == set(SERVICES)

    def delta(now: dict[str, Scrape], at: str, name: str, /, **labels: str) -> float:
        """How much ``name`` grew on endpoint ``at``'s page since ``before``."""
        return now[at].value(name, **labels) - before[at].value(name, **labels)

    async def all_consumed() -> dict[str, Scrape] | None:
        now = await scrape_all(platform, gateway)
        for group, topic, *_ in expected:
            seen = delta(now, group, "events_consumed_total", group=group, topic=topic)
            if seen < len(on_topic[topic]):
                return None
        return now

    after = await eventually(all_consumed, what="every group to consume every event")
    grown = partial(delta, after)

    # The relay: one publication per event on its topic, and nothing left behind.
    for service, topic in (("model", MODEL_EVENTS), ("target", TARGET_EVENTS)):
        published = grown(service, "outbox_events_published_total", service=service, topic=topic)
        assert published == len(on_topic[topic]), (service, topic)
    core_published = grown(
        "core", "outbox_events_published_total", service="core", topic=CORE_EVENTS
    )
    assert core_published == len(on_topic[CORE_EVENTS])

    # Consumers, per group: each event applied once by every group that handles it.
    for (group, topic, ce_type), counts in expected.items():
        labels = {"group": group, "topic": topic, "type": ce_type}
        got = {
            o: grown(group, "events_consumed_total", **labels, outcome=o)
            for o in ("applied", "ignored", "duplicate", "dead_lettered")
        }
        want = dict.fromkeys(got, 0.0) | {o: float(n) for o, n in counts.items()}
        assert got == want, (group, topic, ce_type)
        assert grown(group, "events_dead_lettered_total", group=group) == 0

    # The saga, counted where it happens: model's flow in model, target's in target.
    for flow in ("model", "target"):
        for stage in ("approved", "completed"):
            labels = {"flow": flow, "stage": stage}
            assert grown(flow, "saga_stage_duration_seconds_count", **labels) == 1
        for outcome, count in (("completed", 1), ("canceled", 0), ("failed", 0)):
            labels = {"flow": flow, "outcome": outcome}
            assert grown(flow, "saga_outcomes_total", **labels) == count
        assert grown(flow, "saga_cancellations_total", flow=flow) == 0
    assert grown("target", "saga_compensations_total") == 0

    # core: one job per approved request, one compensation check, one LMS send.
    for kind, outcome in (("model", "enqueued"), ("model", "completed"), ("target", "enqueued")):
        assert grown("core", "core_jobs_total", kind=kind, outcome=outcome) == 1
    assert grown("core", "core_jobs_total", kind="target", outcome="completed") == 1
    assert grown("core", "core_jobs_total", kind="lms", outcome="completed") == 1
    assert grown("core", "core_compensation_checks_total", outcome="complete") == 1
    assert grown("core", "core_compensation_checks_total") == 1
    assert grown("core", "core_lms_sends_total", outcome="accepted") == 1

    # HTTP: the creates as the services and the gateway saw them.
    model_posts = {"service": "model", "method": "POST", "route": "/models", "status": "201"}
    assert grown("model", "http_requests_total", **model_posts) == 1
    gateway_posts = {"route": "/targets", "method": "POST", "status": "201"}
    assert grown("gateway", "gateway_requests_total", **gateway_posts) == 1

    # notice: one chat message per state change (and the LMS send), each sent once.
    async def every_message_sent() -> float | None:
        now = {"notice": await scrape(platform.url("notice"))}
        sent = delta(now, "notice", "notice_messages_sent_total")
        return sent if sent >= len(await chat_texts(platform)) >= 8 else None

    assert await eventually(every_message_sent, what="chat messages") == len(
        await chat_texts(platform)
    )

    # Nothing waits: outboxes empty, every group caught up on every partition it read.
    async def drained() -> bool:
        now = await scrape_all(platform, gateway)
        backlog = [now[s].value("outbox_backlog_events", service=s) for s in SERVICES]
        lag = [
            v
            for name, labels, v in now["target"].samples
            if name == "kafka_consumer_lag_messages" and labels["group"] in SERVICES
        ]
        return bool(lag) and not any(backlog) and not any(lag)

    await eventually(drained, what="outboxes and consumer lag at zero")


# Series that appear only when something goes wrong (a failed attempt, a dead letter, a
# broker outage, an unreachable upstream, a late or unknown core event): a saga run that
# works cannot show them, but the live pages must still declare them.
ONLY_ON_TROUBLE = {
    "events_failed_total",
    "events_retried_total",
    "events_dead_lettered_total",
    "outbox_publish_failures_total",
    "gateway_upstream_errors_total",
    "model_core_events_refused_total",
    "target_core_events_refused_total",
}


async def cancel_and_reject(gateway: httpx.AsyncClient) -> None:
    """A model cancelled while requested, with a target waiting on it (which target then
    cancels: compensation), and a model rejected."""
    doomed = (await gateway.post("/models", json={"userId": "u", "modelName": "D"})).json()["id"]
    waiting = await gateway.post(
        "/targets", json={"userId": "u", "type": "vip", "modelRequestId": doomed}
    )
    assert waiting.status_code == 201, waiting.text
    canceled = await gateway.put(f"/models/{doomed}/cancel", json={"reason": "not needed"})
    assert canceled.status_code == 200, canceled.text
    rejected = (await gateway.post("/models", json={"userId": "u", "modelName": "R"})).json()
    refused = await gateway.put(f"/models/{rejected['id']}/reject", json={"reason": "no"})
    assert refused.status_code == 200, refused.text
    tid = waiting.json()["id"]
    await eventually(lambda: state_is(gateway, f"/targets/{tid}", "canceled"), what="compensation")


async def test_dashboard_and_alerts_use_only_names_the_live_services_expose(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga
    await model_then_target(gateway)
    await cancel_and_reject(gateway)
    scrapes = await scrape_all(platform, gateway)
    declared = set().union(*(s.declared for s in scrapes.values())) | {"up"}  # up: Prometheus's
    series = set().union(*(s.series for s in scrapes.values())) | {"up"}
    used = used_names()

    assert used - declared == set(), "panels or alerts name metrics no service exposes"
    assert used >= ONLY_ON_TROUBLE, "keep the list of exceptions honest"
    assert used - ONLY_ON_TROUBLE - series == set(), "no series after a saga run"
    # Each service's own page declares the kernel's metrics and its own.
    for name in ENDPOINTS:
        own = {"gateway": "gateway_requests_total", "core": "core_queue_depth"}
        assert own.get(name, "http_requests_total") in scrapes[name].declared, name
