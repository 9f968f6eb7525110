"""The operations page in a real headless Chromium: an LMS send fails while MIDAS is down,
the admin sees it listed, reads the dry run, re-drives it and sees the outcome; MIDAS
then makes exactly one send for the target, which its timeline shows. Then a dead letter,
re-driven the same way. docs/screenshots/operations-redrive.png is a copy of this module's
``operations-redrive.png`` artefact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.browser.conftest import new_context, sign_in
from tests.connected.whole_platform import ADMIN_PASSWORD, Platform, whole_platform
from tests.support import eventually

pytestmark = pytest.mark.connected

CORE = {
    "training_steps": 2,
    "step_duration_s": 0.1,
    "extraction_steps": 1,
    "job_max_attempts": 2,
    "lms_max_attempts": 2,
    "job_backoff_max_s": 0.2,
}
Json = dict[str, Any]


@pytest.fixture(scope="module")
async def platform(
    postgres_admin_url: str, module_topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    async with whole_platform(postgres_admin_url, module_topics, core=CORE) as running:
        yield running


async def state_is(gateway: httpx.AsyncClient, path: str, state: str) -> Json | None:
    body = (await gateway.get(path)).json()
    return body if body.get("state") == state else None


async def test_a_failed_lms_send_is_redriven_from_the_operations_page(
    platform: tuple[Platform, httpx.AsyncClient], browser: Browser, artifacts: Path
) -> None:
    running, gateway = platform
    base = str(gateway.base_url).rstrip("/")
    async with httpx.AsyncClient(base_url=running.simulators_url) as sim:
        # A completed model (the admin's own), then a target whose LMS send fails: MIDAS is down.
        mid = (await gateway.post("/models", json={"userId": "admin", "modelName": "ops"})).json()[
            "id"
        ]
        assert (await gateway.put(f"/models/{mid}")).status_code == 200
        await eventually(lambda: state_is(gateway, f"/models/{mid}", "completed"))
        await sim.put("/midas/_faults", json={"failAlways": True})

        async def target_taken() -> int | None:  # once target has heard the model completed
            response = await gateway.post(
                "/targets", json={"userId": "admin", "type": "vip", "modelRequestId": mid}
            )
            return response.json()["id"] if response.status_code == 201 else None

        tid = await eventually(target_taken, what="a target on the completed model")

        async def approved() -> bool:
            return (await gateway.put(f"/targets/{tid}")).status_code == 200

        await eventually(approved, what="the target approved")

        async def failed_lms() -> list[Json] | None:
            response = await gateway.get("/cores/ops/failed", params={"kind": "lms"})
            return response.json() or None

        [job] = await eventually(failed_lms, what="the failed LMS send")
        await sim.put("/midas/_faults", json={})  # MIDAS is back: a re-drive can succeed
        sends_before = (await sim.get("/midas/sends")).json()

        context = await new_context(browser)
        page = await sign_in(context, base, "admin", ADMIN_PASSWORD)
        await page.goto(base + "/ui/operations")
        item = page.locator(f"#stuck-core-failed-{job['id']}")
        await expect(item).to_contain_text("lms")
        await expect(item).to_contain_text("midas answered 503")
        # Every consuming service's dead letters are listed (none here), and the stalls.
        for service in ("model", "target", "core", "notice", "mypage_cqrs"):
            await expect(page.locator(f"#stuck-{service}-dead-letters")).to_be_visible()
        await expect(page.locator("#stalls")).to_be_visible()
        await page.screenshot(path=str(artifacts / "operations-redrive.png"), full_page=True)

        # The item's button, by its label and from the keyboard: the dry run first.
        button = item.get_by_role("button", name=f"Re-drive core {job['id']}")
        await button.focus()
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/ui/operations/redrive?**")
        dry = page.locator(f"#redrive-{job['id']}")
        await expect(dry).to_have_attribute("data-outcome", "would_redrive")
        await expect(dry).to_contain_text("would be tried again")
        await expect(page.locator("#redrive-rows caption")).to_contain_text("Dry run")
        await page.screenshot(path=str(artifacts / "redrive-confirmation.png"), full_page=True)
        # The dry run changed nothing.
        assert [j["id"] for j in (await failed_lms()) or []] == [job["id"]]

        await page.locator("#confirm-redrive").click()
        done = page.locator(f"#redrive-{job['id']}")
        await expect(done).to_have_attribute("data-outcome", "redriven")
        await expect(done).to_contain_text("re-driven: queued again")
        await page.screenshot(path=str(artifacts / "redrive-outcome.png"), full_page=True)

        async def sent() -> list[Json] | None:
            sends = (await sim.get("/midas/sends")).json()
            return [s for s in sends if s.get("targetId") == tid] or None

        mine = await eventually(sent, what="MIDAS's send for the re-driven target")

        # The target's timeline shows the LMS send; the page no longer lists the failure.
        await page.goto(f"{base}/ui/requests/target-{tid}")
        # The failed send, then the one re-driven send with MIDAS's send id.
        lms = page.locator("#timeline tr.entry-lms")
        await expect(lms.locator("xpath=self::*[@data-state='sent']")).to_have_count(1)
        await expect(lms.first).to_have_attribute("data-state", "failed")
        sent_row = page.locator("#timeline tr.entry-lms[data-state='sent']")
        await expect(sent_row.locator(".send-id")).to_have_text(mine[0]["sendId"])
        lms_states = [await r.get_attribute("data-state") for r in await lms.all()]
        await page.screenshot(path=str(artifacts / "redriven-timeline.png"), full_page=True)
        await page.goto(base + "/ui/operations")
        await expect(page.locator("#stuck-core-failed")).to_contain_text("Nothing stuck.")
        sends_after = (await sim.get("/midas/sends")).json()
        await context.close()

    print(
        f"\nfailed LMS job {job['id']} (attempts {job['attempts']}); MIDAS sends before "
        f"re-drive: {len(sends_before)}, after: {len(sends_after)}, for the target: {len(mine)}; "
        f"timeline LMS entries: {lms_states}"
    )
    assert sends_before == []
    assert len(mine) == 1 and len(sends_after) == 1
    assert lms_states == ["failed", "sent"]


# model refuses to record a completion until the trigger is dropped: the event is parked.
POISON = """
CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'model request % is locked for maintenance', OLD.id; END $$;
CREATE TRIGGER poisoned BEFORE UPDATE ON model_requests FOR EACH ROW
WHEN (NEW.state = 'completed') EXECUTE FUNCTION refuse_completion();
"""


async def test_a_dead_letter_is_redriven_from_the_operations_page(
    platform: tuple[Platform, httpx.AsyncClient], browser: Browser, artifacts: Path
) -> None:
    running, gateway = platform
    base = str(gateway.base_url).rstrip("/")
    engine = create_async_engine(running.databases["model"])
    try:
        async with engine.begin() as conn:
            for statement in POISON.split(";\n"):
                if statement.strip():
                    await conn.execute(text(statement))
        mid = (
            await gateway.post("/models", json={"userId": "admin", "modelName": "parked"})
        ).json()["id"]
        assert (await gateway.put(f"/models/{mid}")).status_code == 200

        async def parked() -> list[Json] | None:
            return (await gateway.get("/models/ops/dead-letters")).json() or None

        [letter] = await eventually(parked, timeout_s=60, what="the completion dead-lettered")
        async with engine.begin() as conn:  # the cause is fixed
            await conn.execute(text("DROP TRIGGER poisoned ON model_requests"))
    finally:
        await engine.dispose()

    context = await new_context(browser)
    page = await sign_in(context, base, "admin", ADMIN_PASSWORD)
    await page.goto(base + "/ui/operations")
    item = page.locator(f"#stuck-model-dead-letters-{letter['id']}")
    await expect(item).to_contain_text("ModelCompleted")
    await expect(item).to_contain_text("locked for maintenance")
    # The whole list's button: the dry run says it would apply.
    await page.get_by_role("button", name="Re-drive all: Dead letters of model").click()
    row = page.locator(f"#redrive-{letter['id']}")
    await expect(row).to_have_attribute("data-outcome", "would_apply")
    await expect(row).to_contain_text("would apply")
    assert (await gateway.get(f"/models/{mid}")).json()["state"] != "completed"  # dry run
    await page.locator("#confirm-redrive").click()
    await expect(row).to_have_attribute("data-outcome", "applied")
    await expect(row.locator(".outcome")).to_have_text("applied")
    await page.screenshot(path=str(artifacts / "redrive-dead-letter.png"), full_page=True)
    model = await eventually(lambda: state_is(gateway, f"/models/{mid}", "completed"))
    after = (await gateway.get("/models/ops/dead-letters", params={"status": "all"})).json()
    await page.goto(base + "/ui/operations")
    await expect(page.locator("#stuck-model-dead-letters")).to_contain_text("Nothing stuck.")
    await page.goto(base + "/ui/operations?lang=ko")  # the Korean words
    await expect(page.locator("#stuck-heading")).to_have_text("데드레터와 실패한 작업")
    await expect(page.locator("#stuck-model-dead-letters")).to_contain_text("막힌 것이 없습니다.")
    await context.close()
    print(f"\ndead letter {letter['id']} {letter['eventType']}: {[d['status'] for d in after]}")
    assert model["progress"] == 100
    assert [(d["id"], d["status"]) for d in after] == [(letter["id"], "redriven")]
