"""A trained model's card on core's data volume, served through the gateway; and the
events' AsyncAPI document the gateway serves.

One platform for the module: a model request is approved and trained; its card is read
from the file and through the gateway by its owner, an admin and someone else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.connected.whole_platform import Platform, whole_platform
from tests.support import bearer, eventually

pytestmark = pytest.mark.connected

Json = dict[str, Any]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("core-data")


@pytest.fixture
async def platform(
    postgres_admin_url: str, topics: str, data_dir: Path
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    async with whole_platform(
        postgres_admin_url, topics, core={"data_dir": data_dir, "vertica_batch_size": 50}
    ) as running:
        yield running


async def completed_job(gateway: httpx.AsyncClient, request_id: int) -> Json | None:
    jobs = (await gateway.get("/cores", params={"kind": "model"})).json()
    return next(
        (j for j in jobs if j["requestId"] == str(request_id) and j["state"] == "completed"),
        None,
    )


async def test_a_trained_model_has_its_card_for_its_owner_and_admins(
    platform: tuple[Platform, httpx.AsyncClient], data_dir: Path
) -> None:
    _, gateway = platform
    owner = bearer("alice", "user")
    created = await gateway.post(
        "/models",
        data={"userId": "alice", "state": "request", "modelName": "Churn"},
        headers=owner,
    )
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    job = await gateway.get("/cores", params={"kind": "model"})
    assert job.json() == []  # nothing trained before the approval
    assert (await gateway.put(f"/models/{mid}")).status_code == 200
    job = await eventually(lambda: completed_job(gateway, mid), what="training to complete")

    # on the volume: <data dir>/models/<job id>.json, and no temporary file left
    path = data_dir / "models" / f"{job['id']}.json"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    card = json.loads(path.read_text())
    assert card["request"] == {
        "modelRequestId": str(mid),
        "modelName": "Churn",
        "userId": "alice",
    }
    assert card["parameters"]["trainingSteps"] == 3
    assert card["parameters"]["verticaBatchSize"] == 50
    assert [s["step"] for s in card["steps"]] == [1, 2, 3]
    batches = card["verticaBatches"]
    assert [b["batch"] for b in batches] == [1, 2, 3]
    assert [b["offset"] for b in batches] == [0, 50, 100]
    assert all(b["rows"] == 50 for b in batches)
    seen = [s["metrics"]["rowsSeen"] for s in card["steps"]]
    assert seen == [50, 100, 150]
    losses = [s["metrics"]["loss"] for s in card["steps"]]
    assert losses == sorted(losses, reverse=True) and losses[0] > losses[-1]
    assert card["metrics"] == card["steps"][-1]["metrics"]

    # through the gateway: the owner and an admin get the file's content
    mine = await gateway.get(f"/cores/{job['id']}/artifact", headers=owner)
    assert mine.status_code == 200, mine.text
    assert mine.json() == card
    assert (await gateway.get(f"/cores/{job['id']}/artifact")).json() == card  # admin

    # someone else gets the 404 of a job that does not exist
    other = await gateway.get(f"/cores/{job['id']}/artifact", headers=bearer("bob", "user"))
    missing = await gateway.get("/cores/999999/artifact", headers=owner)
    assert other.status_code == missing.status_code == 404
    assert "not found" in other.json()["detail"]
    no_token = {"Authorization": ""}
    assert (await gateway.get(f"/cores/{job['id']}/artifact", headers=no_token)).status_code == 401


async def test_the_gateway_serves_the_asyncapi_document_without_a_token(
    platform: tuple[Platform, httpx.AsyncClient],
) -> None:
    _, gateway = platform
    response = await gateway.get("/asyncapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    doc = response.json()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["modelEvents"]["address"] == "model.events"
    assert "Requested_v1" in doc["components"]["messages"]
