"""Who may do what, asked through the gateway and directly of each service: same answers.

A user sees and cancels only their own requests (someone else's is a 404), only an
admin approves or rejects (403), and identity comes only from a verified token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.connected.whole_platform import ADMIN_PASSWORD, Platform, whole_platform
from tests.support import bearer, eventually

pytestmark = pytest.mark.connected

TEST, MALLORY, ADMIN = bearer("test"), bearer("mallory"), bearer()


@pytest.fixture
async def saga(
    postgres_admin_url: str, topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    async with whole_platform(postgres_admin_url, topics) as running:
        yield running


def front_doors(platform: Platform, gateway: httpx.AsyncClient, service: str) -> list[str]:
    """The gateway, and the service itself bypassing it."""
    return [str(gateway.base_url), platform.url(service)]


async def test_no_token_or_a_bad_one_is_401_everywhere_but_health(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga
    paths = {
        "model": "/models",
        "target": "/targets",
        "core": "/cores",
        "notice": "/notices",
        "mypage_cqrs": "/myRequests",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for service, path in paths.items():
            for base in front_doors(platform, gateway, service):
                for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                    answer = await http.get(base + path, headers=headers)
                    assert answer.status_code == 401, (base, path, answer.text)
                    assert answer.json()["detail"].startswith("unauthorized:")
                assert (await http.get(base + path, headers=TEST)).status_code == 200
            health = await http.get(platform.url(service) + "/health/live")
            assert health.status_code == 200


async def test_users_see_and_cancel_only_their_own_and_only_admins_approve(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga
    async with httpx.AsyncClient(timeout=10) as http:
        for base in front_doors(platform, gateway, "model"):
            created = await http.post(
                f"{base}/models", data={"userId": "test", "modelName": "Mine"}, headers=TEST
            )
            assert created.status_code == 201, created.text
            mid = created.json()["id"]

            assert (await http.get(f"{base}/models/{mid}", headers=TEST)).status_code == 200
            theirs = await http.get(f"{base}/models/{mid}", headers=MALLORY)
            assert theirs.status_code == 404
            assert theirs.json() == {"detail": f"model request {mid} not found"}
            cancel = await http.put(f"{base}/models/{mid}/cancel", headers=MALLORY)
            assert cancel.status_code == 404
            assert (await http.get(f"{base}/models", headers=MALLORY)).json() == []
            spying = await http.get(f"{base}/models", params={"userId": "test"}, headers=MALLORY)
            assert spying.status_code == 403
            assert "only your own" in spying.json()["detail"]

            approve = await http.put(f"{base}/models/{mid}", headers=TEST)
            assert approve.status_code == 403
            assert approve.json() == {
                "detail": "forbidden: only an admin may approve a model request"
            }
            reject = await http.put(
                f"{base}/models/{mid}/reject", json={"reason": "x"}, headers=TEST
            )
            assert reject.status_code == 403
            # Identity headers a client sends are not trusted: the token says who calls.
            forged = {**TEST, "X-User-Id": "admin", "X-User-Roles": "admin"}
            assert (await http.put(f"{base}/models/{mid}", headers=forged)).status_code == 403
            assert (await http.get(f"{base}/models/{mid}", headers=TEST)).json()[
                "state"
            ] == "requested"

            for_someone_else = await http.post(
                f"{base}/models", json={"userId": "mallory", "modelName": "Theirs"}, headers=TEST
            )
            assert for_someone_else.status_code == 403
            assert (await http.put(f"{base}/models/{mid}", headers=ADMIN)).json()[
                "state"
            ] == "approved"
            assert (await http.put(f"{base}/models/{mid}/cancel", headers=TEST)).status_code == 200


async def test_every_read_side_hides_other_users_requests(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga
    created = await gateway.post(
        "/models", json={"userId": "test", "modelName": "Private"}, headers=TEST
    )
    mid = created.json()["id"]
    await gateway.put(f"/models/{mid}", headers=ADMIN)

    async def job_listed() -> list[dict]:
        return (await gateway.get("/cores", headers=TEST)).json()

    job = (await eventually(job_listed, what="the job in test's list"))[0]
    target = await gateway.post(
        "/targets", json={"userId": "test", "type": "t", "modelRequestId": mid}, headers=TEST
    )
    tid = target.json()["id"]

    async def notices() -> list[dict]:
        return (await gateway.get("/notices", headers=TEST)).json()

    notice = (await eventually(notices, what="test's notices"))[0]

    async def my_row() -> bool:
        return (await gateway.get(f"/myRequests/model-{mid}", headers=TEST)).status_code == 200

    await eventually(my_row, what="test's read model row")

    async with httpx.AsyncClient(timeout=10) as http:
        for service, path in [
            ("core", f"/cores/{job['id']}"),
            ("target", f"/targets/{tid}"),
            ("notice", f"/notices/{notice['id']}"),
            ("mypage_cqrs", f"/myRequests/model-{mid}"),
        ]:
            for base in front_doors(platform, gateway, service):
                assert (await http.get(base + path, headers=TEST)).status_code == 200
                assert (await http.get(base + path, headers=MALLORY)).status_code == 404, path
                assert (await http.get(base + path, headers=ADMIN)).status_code == 200
        for service, path in [
            ("core", "/cores"),
            ("target", "/targets"),
            ("notice", "/notices"),
            ("mypage_cqrs", "/myRequests"),
        ]:
            for base in front_doors(platform, gateway, service):
                assert (await http.get(base + path, headers=MALLORY)).json() == [], path
                spying = await http.get(base + path, params={"userId": "test"}, headers=MALLORY)
                assert spying.status_code == 403, path


async def test_sql_in_a_name_is_stored_and_returned_verbatim(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    _, gateway = saga
    name = "'; DROP TABLE model_requests;--"
    created = await gateway.post(
        "/models", data={"userId": "test", "modelName": name}, headers=TEST
    )
    assert created.status_code == 201 and created.json()["modelName"] == name
    again = await gateway.get(f"/models/{created.json()['id']}", headers=TEST)
    assert again.json()["modelName"] == name
    assert len((await gateway.get("/models", headers=TEST)).json()) == 1


async def test_a_user_the_admin_creates_logs_in_and_sees_their_menus(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    _, gateway = saga
    login = await gateway.post(
        "/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, headers={}
    )
    assert login.status_code == 200, login.text
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    made = await gateway.post(
        "/users",
        json={"username": "dana", "password": "s3cret-enough", "roles": ["user"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    token = (
        await gateway.post("/auth/token", data={"username": "dana", "password": "s3cret-enough"})
    ).json()["access_token"]
    dana = {"Authorization": f"Bearer {token}"}

    created = await gateway.post("/models", json={"userId": "dana", "modelName": "M"}, headers=dana)
    assert created.status_code == 201
    admin_menus = {m["id"] for m in (await gateway.get("/menus", headers=admin)).json()["menus"]}
    dana_menus = {m["id"] for m in (await gateway.get("/menus", headers=dana)).json()["menus"]}
    assert dana_menus < admin_menus
