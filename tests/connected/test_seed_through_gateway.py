"""End to end through the gateway, every service started the way ``nocode up`` starts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from contracts.topics import MODEL_EVENTS
from nocode.launcher import LauncherSettings, Platform
from nocode.services import SERVICES, SIMULATORS
from tests.support import AUTH_ENV, bearer, ce, free_port, read_topic

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data_dir = tmp_path_factory.mktemp("nocode")
    env = {
        **AUTH_ENV,
        "PATH": "/usr/bin:/bin",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "LOG_LEVEL": "INFO",
        **{f"{s.env_prefix}_PORT": str(free_port()) for s in (*SERVICES, SIMULATORS)},
    }
    settings = LauncherSettings(
        data_dir=data_dir, postgres_port=free_port(), broker_port=free_port()
    )
    running = Platform(settings=settings, env=env)
    with Path(data_dir / "services.log").open("wb") as log:
        try:
            running.start_infrastructure()
            running.start_services(stdout=log.fileno())
            running.wait_ready()
            yield running
        finally:
            running.stop()


@pytest.fixture
def gateway(platform: Platform) -> Iterator[httpx.Client]:
    port = platform.port(SERVICES[0])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=bearer()) as client:
        yield client


async def test_the_seed_calls_request_then_approve(platform: Platform) -> None:
    port = platform.port(SERVICES[0])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer()) as gateway:
        await seed_calls(gateway)
    await seed_events_on_the_topic(platform)


async def seed_calls(gateway: httpx.AsyncClient) -> None:
    # http gateway:8080/models userId=test state=request modelName=TestModel10 (siege: a form)
    created = await gateway.post(
        "/models", data={"userId": "test", "state": "request", "modelName": "TestModel10"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] == 1 and created.json()["state"] == "requested"
    assert created.headers["x-request-id"]

    # http PUT gateway:8080/models id=1 (httpie sends JSON strings)
    approved = await gateway.put("/models", json={"id": "1"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
    assert (await gateway.get("/models/1")).json()["state"] == "approved"


async def seed_events_on_the_topic(platform: Platform) -> None:
    records = await read_topic(platform.bootstrap_servers, MODEL_EVENTS, expect=2)
    values = [orjson.loads(r.value) for r in records if r.key == b"1"]
    assert [v["eventType"] for v in values] == ["Requested", "Approved"]
    assert [v["state"] for v in values] == ["requested", "approved"]
    assert all((v["id"], v["userId"], v["modelName"]) == (1, "test", "TestModel10") for v in values)
    assert [ce(r)["ce_type"] for r in records if r.key == b"1"] == [
        "nocode.model.Requested",
        "nocode.model.Approved",
    ]


def test_cancel_then_approving_the_cancelled_request_is_refused(gateway: httpx.Client) -> None:
    id = gateway.post("/models", json={"userId": "test", "modelName": "TestModel11"}).json()["id"]
    cancelled = gateway.put(f"/models/{id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "requestCanceled"

    refused = gateway.put(f"/models/{id}")
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": f"cannot approve model request {id}: it is requestCanceled",
        "currentState": "requestCanceled",
        "action": "approve",
    }
    assert gateway.get(f"/models/{id}").json()["state"] == "requestCanceled"


def test_reject_needs_a_reason_and_keeps_it(gateway: httpx.Client) -> None:
    id = gateway.post("/models", json={"userId": "test", "modelName": "TestModel12"}).json()["id"]
    missing = gateway.put(f"/models/{id}/reject", json={})
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"field": "reason", "message": "Field required"}]
    assert gateway.get(f"/models/{id}").json()["state"] == "requested"

    rejected = gateway.put(f"/models/{id}/reject", data={"reason": "no training budget"})
    assert rejected.status_code == 200
    assert (rejected.json()["state"], rejected.json()["reason"]) == (
        "rejected",
        "no training budget",
    )


def requests_stored(gateway: httpx.Client) -> list[tuple[int, str]]:
    # Ids and names only: core trains the approved ones meanwhile.
    return [(r["id"], r["modelName"]) for r in gateway.get("/models").json()]


def test_bad_input_is_named_and_changes_nothing(gateway: httpx.Client) -> None:
    before = requests_stored(gateway)
    invalid = gateway.post("/models", json={"userId": "test"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"] == "invalid request: modelName: Field required"
    not_json = gateway.post(
        "/models", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422 and "invalid JSON" in not_json.json()["detail"]
    assert requests_stored(gateway) == before

    missing = gateway.get("/models/9999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "model request 9999 not found"}
    assert gateway.put("/models/9999").status_code == 404


def test_every_service_answers_health(platform: Platform) -> None:
    for spec in (*SERVICES, SIMULATORS):
        url = f"http://127.0.0.1:{platform.port(spec)}/health/ready"
        assert httpx.get(url).status_code == 200, spec.name
