"""The web console in a real headless Chromium, against the whole platform.

The scenarios share one platform and run in order: an admin creates the user the others
use, a model goes from request to LMS send, one is cancelled mid-training, then access
rules, a form error, the cookie and CSRF.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import new_context, sign_in
from tests.connected.whole_platform import ADMIN_PASSWORD, Platform, whole_platform

pytestmark = pytest.mark.connected

USER, USER_PASSWORD = "alice", "alice-password-1"
OTHER, OTHER_PASSWORD = "bob", "bob-password-12"
# Training slow enough that progress shows steps and a cancel lands mid-training.
CORE = {"training_steps": 6, "step_duration_s": 0.8, "extraction_steps": 2}


ACCESS_TOKEN_TTL_S = 40


class Shared:
    base: str = ""
    admin_signed_in_at: float = 0.0
    model_view: str = ""  # alice's completed model, e.g. "model-1"


@pytest.fixture(scope="module")
async def platform(
    postgres_admin_url: str, module_topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    # Access tokens shorter than the module's run: sessions live on by refreshing them.
    gateway = {"access_token_ttl_s": ACCESS_TOKEN_TTL_S}
    async with whole_platform(
        postgres_admin_url, module_topics, core=CORE, gateway=gateway
    ) as running:
        Shared.base = str(running[1].base_url).rstrip("/")
        yield running


@pytest.fixture(scope="module")
async def admin(browser: Browser, platform: object) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser)
    yield context
    await context.close()


@pytest.fixture(scope="module")
async def user(browser: Browser, platform: object) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser)
    yield context
    await context.close()


async def shot(page: Page, artifacts: Path, name: str) -> None:
    await page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


async def row_of(page: Page, name: str) -> str:
    """The view id (``model-3``) of the list row showing ``name``."""
    row = page.locator("#requests tbody tr", has_text=name)
    await expect(row).to_be_visible()
    return (await row.get_attribute("id") or "").removeprefix("row-")


async def test_a_request_goes_from_the_form_to_the_lms_send(
    platform: tuple[Platform, httpx.AsyncClient],
    admin: BrowserContext,
    user: BrowserContext,
    artifacts: Path,
) -> None:
    base = Shared.base
    boss = await sign_in(admin, base, "admin", ADMIN_PASSWORD)
    Shared.admin_signed_in_at = time.monotonic()
    await expect(boss.locator("#menu-inbox")).to_be_visible()

    # The admin creates the data scientist on the Users page.
    await boss.goto(base + "/ui/users")
    form = boss.locator("form[action='/ui/users']")
    await form.get_by_label("Username").fill(USER)
    await form.get_by_label("Password").fill(USER_PASSWORD)
    await boss.locator("#create-user").click()
    await expect(boss.locator(f"#user-{USER}")).to_contain_text("user")
    await shot(boss, artifacts, "users")

    # The user signs in and requests a model: it is there, pending.
    page = await sign_in(user, base, USER, USER_PASSWORD)
    await shot(page, artifacts, "signed-in-empty")
    await page.get_by_role("link", name="Request a model").click()
    await page.get_by_label("Model name").fill("churn-model")
    await page.get_by_role("button", name="Send request").click()
    await page.wait_for_url("**/ui/requests")
    view = await row_of(page, "churn-model")
    Shared.model_view = view
    row = page.locator(f"#row-{view}")
    await expect(row.get_by_test_id("state")).to_have_text("requested")

    # A second tab opens the cancel page now and submits it after completion: too late.
    late = await user.new_page()
    await late.goto(f"{base}/ui/requests/{view}/cancel")
    await expect(late.locator("#cancel-explanation")).to_contain_text("next step")
    await shot(late, artifacts, "cancel-confirmation")

    # The admin sees it in the inbox, with its age and a count on the menu, and approves.
    await boss.goto(base + "/ui/inbox")
    pending = boss.locator(f"#pending-{view}")
    await expect(pending).to_contain_text("churn-model")
    await expect(pending.locator("time.age")).to_have_text(re.compile(r"^\d+ (s|min)$"))
    await expect(boss.locator("#inbox-count")).to_have_text("1")
    await shot(boss, artifacts, "inbox")
    await page.evaluate("window.notReloaded = true")
    await pending.get_by_role("button", name=f"Approve {view}").click()
    await expect(boss.locator(".flash.ok")).to_contain_text(f"{view} approved")

    # The user's page, never reloaded, shows the progress moving, then completed.
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = await row.get_attribute("data-state")
        progress = int(await row.get_attribute("data-progress") or 0)
        if not seen or seen[-1] != progress:
            seen.append(progress)
            if 0 < progress < 100 and len(seen) == 2:
                await shot(page, artifacts, "my-requests-live")
        if state == "completed":
            break
        await asyncio.sleep(0.1)
    print(f"\nprogress values the page showed: {seen}")
    assert any(0 < p < 100 for p in seen), seen
    assert seen == sorted(seen) and seen[-1] == 100, seen
    await expect(row.get_by_test_id("state")).to_have_text("completed")
    assert await page.evaluate("window.notReloaded") is True
    updates = int(await page.locator("#live-region").get_attribute("data-updates") or 0)
    assert updates >= 3, updates

    # Cancelling now is too late, and the page says so.
    await late.get_by_label("Reason").fill("changed my mind")
    await late.locator("#confirm-cancel").click()
    await expect(late.locator(".flash.error")).to_have_text(
        f"Too late: request {view} has already completed."
    )
    await expect(late.locator("#current-state")).to_have_text("completed")

    # A target on that model: the form offers only the user's completed models.
    await page.get_by_role("link", name="Request a target").click()
    options = page.locator("#modelRequestId option")
    await expect(options).to_have_count(1)
    assert await options.first.get_attribute("value") == view.removeprefix("model-")
    await page.get_by_label("Target type").fill("churn-risk")
    await shot(page, artifacts, "new-target")
    await page.get_by_role("button", name="Send request").click()
    await page.wait_for_url("**/ui/requests")
    target_view = await row_of(page, "model-" + view.removeprefix("model-") + ")")

    await boss.goto(base + "/ui/inbox")
    await boss.get_by_role("button", name=f"Approve {target_view}").click()
    await expect(boss.locator(".flash.ok")).to_contain_text(f"{target_view} approved")

    # The target's timeline ends with the LMS send.
    await page.goto(f"{base}/ui/requests/{target_view}")
    lms = page.locator("#timeline tr.entry-lms")
    await expect(lms).to_have_attribute("data-state", "sent", timeout=30_000)
    await expect(lms).to_contain_text("LMS send: sent")
    await expect(lms.locator(".send-id")).to_have_text(re.compile(r"\S+"))
    await expect(page.locator("#current-state")).to_have_text("completed")
    await shot(page, artifacts, "timeline-target")
    # The model's: every training step, the Vertica batches, the compensation check, and
    # each chat message with its delivery status.
    await page.goto(f"{base}/ui/requests/{view}")
    timeline = page.locator("#timeline")
    await expect(timeline.locator("tr.entry-progress")).to_have_count(CORE["training_steps"])
    assert await timeline.locator("tr.entry-batch").count() >= CORE["training_steps"]
    await expect(timeline.locator("tr.entry-check")).to_have_attribute("data-state", "completed")
    await expect(timeline.locator("tr.entry-chat").first).to_contain_text("Delivery: sent")
    await shot(page, artifacts, "timeline-model")
    await page.goto(base + "/ui/notices")
    await expect(page.locator("#notices li").first).to_contain_text(USER)
    await shot(page, artifacts, "notifications")
    await page.goto(base + "/ui/requests")
    await shot(page, artifacts, "my-requests")
    await late.close()


async def test_a_model_cancelled_during_training_never_completes(
    platform: tuple[Platform, httpx.AsyncClient], user: BrowserContext, artifacts: Path
) -> None:
    base, (_, gateway) = Shared.base, platform
    page = await user.new_page()
    await page.goto(base + "/ui/models/new")
    await page.get_by_label("Model name").fill("cancel-me")
    await page.get_by_role("button", name="Send request").click()
    view = await row_of(page, "cancel-me")
    number = view.removeprefix("model-")
    approved = await gateway.put(f"/models/{number}")  # the admin, through the API
    assert approved.status_code == 200, approved.text

    await page.goto(f"{base}/ui/requests/{view}")
    await expect(page.locator("#current-state")).to_have_text("in progress", timeout=30_000)
    await page.get_by_role("link", name="Cancel this request").click()
    await expect(page.locator("#cancel-explanation")).to_contain_text("training at its next step")
    await page.get_by_label("Reason").fill("wrong data window")
    await page.locator("#confirm-cancel").click()
    await expect(page.locator(".flash.ok")).to_have_text(f"Request {view} is cancelled.")

    # Longer than the rest of the training would have taken: still no completion.
    await asyncio.sleep(CORE["training_steps"] * CORE["step_duration_s"] + 1)
    await expect(page.locator("#current-state")).to_have_text("cancelled")
    cancelled = page.locator("#timeline tr.entry-state", has_text="wrong data window")
    await expect(cancelled).to_have_attribute("data-state", "requestCanceled")
    await expect(page.locator("#timeline tr[data-state='completed']")).to_have_count(0)
    await shot(page, artifacts, "timeline-cancelled")
    model = (await gateway.get(f"/models/{number}")).json()
    assert model["state"] == "requestCanceled" and model["progress"] < 100, model
    await page.close()


async def test_a_user_sees_no_admin_page_nor_anyone_elses_request(
    platform: tuple[Platform, httpx.AsyncClient], browser: Browser, artifacts: Path
) -> None:
    base, (_, gateway) = Shared.base, platform
    created = await gateway.post(
        "/users", json={"username": OTHER, "password": OTHER_PASSWORD, "roles": ["user"]}
    )
    assert created.status_code == 201, created.text
    context = await new_context(browser)
    page = await sign_in(context, base, OTHER, OTHER_PASSWORD)
    menu = page.get_by_role("navigation", name="Main menu")
    await expect(menu.get_by_role("link")).to_have_text(
        ["My requests", "Request a model", "Request a target", "Notifications"]
    )
    for path in ("/ui/inbox", "/ui/users", "/ui/operations", f"/ui/requests/{Shared.model_view}"):
        response = await page.goto(base + path)
        assert response is not None and response.status == 404, path
        await expect(page.locator("h1")).to_have_text("Not found")
    await shot(page, artifacts, "not-found")
    await context.close()


async def test_the_api_error_is_shown_next_to_its_field(
    platform: object, user: BrowserContext, artifacts: Path
) -> None:
    page = await user.new_page()
    await page.goto(Shared.base + "/ui/models/new")
    await page.get_by_label("Model name").fill("x" * 256)
    await page.get_by_role("button", name="Send request").click()
    error = page.locator("#modelName-error")
    await expect(error).to_have_text("String should have at most 255 characters")
    await expect(page.get_by_label("Model name")).to_have_attribute("aria-invalid", "true")
    await shot(page, artifacts, "form-error")
    await page.close()


async def test_my_requests_filter_by_kind_and_state_and_search_by_name(
    platform: object, user: BrowserContext
) -> None:
    page = await user.new_page()
    await page.goto(Shared.base + "/ui/requests")
    ids = page.locator("#requests tbody tr td:first-child")
    await page.get_by_label("Kind").select_option("model")
    await page.get_by_label("State").select_option("cancelled")
    await page.get_by_role("button", name="Filter").click()
    await expect(ids).to_have_text(["model-2"])
    await page.goto(Shared.base + "/ui/requests?kind=target")
    await expect(ids).to_have_text(["target-1"])
    await page.goto(Shared.base + "/ui/requests")
    await page.get_by_label("Search by name").fill("CHURN")
    await page.get_by_role("button", name="Filter").click()
    await expect(ids).to_have_text(["target-1", "model-1"])
    await page.close()


async def test_the_session_cookie_is_httponly_and_csrf_is_required(
    platform: tuple[Platform, httpx.AsyncClient], user: BrowserContext
) -> None:
    _, gateway = platform
    cookie = next(c for c in await user.cookies() if c["name"] == "nocode_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax", cookie
    page = await user.new_page()
    await page.goto(Shared.base + "/ui/models/new")
    assert "nocode_console=" not in await page.evaluate("document.cookie")
    before = len((await gateway.get("/models", params={"userId": USER})).json())

    post = """async (csrf) => {
        const body = new URLSearchParams({modelName: "no-token"});
        if (csrf) body.set("csrf", csrf);
        const r = await fetch("/ui/models/new", {method: "POST", body});
        return r.status;
    }"""
    assert await page.evaluate(post, None) == 403
    token = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert await page.evaluate(post, token) == 200  # followed the redirect to the list
    after = (await gateway.get("/models", params={"userId": USER})).json()
    assert [m["modelName"] for m in after[before:]] == ["no-token"]
    await page.close()


async def test_an_expired_session_goes_back_to_sign_in_with_a_message(
    platform: object, browser: Browser
) -> None:
    context = await new_context(browser)
    # A session id this console does not know: ended, or from before the console restarted.
    await context.add_cookies(
        [{"name": "nocode_console", "value": "stale", "url": Shared.base + "/ui/"}]
    )
    page = await context.new_page()
    await page.goto(Shared.base + "/ui/requests")
    await page.wait_for_url("**/ui/signin?expired=1&next=/ui/requests")
    await expect(page.locator("#signin-message")).to_have_text(
        "Your session has expired. Please sign in again."
    )
    await page.get_by_label("Username").fill(USER)
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_have_text("Invalid username or password.")
    assert not [
        c
        for c in await context.cookies()
        if c["name"] == "nocode_console" and c["value"] != "stale"
    ]
    await context.close()


async def test_admin_rejects_manages_a_user_and_sees_operations(
    platform: tuple[Platform, httpx.AsyncClient], admin: BrowserContext, artifacts: Path
) -> None:
    _, gateway = platform
    page = await admin.new_page()
    # The request left pending by the CSRF test: rejected from the inbox, with a reason.
    await page.goto(Shared.base + "/ui/inbox")
    pending = page.locator("#inbox tbody tr", has_text="no-token")
    view = (await pending.get_attribute("id") or "").removeprefix("pending-")
    await pending.get_by_label(f"Reason for rejecting {view}").fill("duplicate")
    await pending.get_by_role("button", name=f"Reject {view}").click()
    await expect(page.locator(".flash.ok")).to_have_text(f"{view} rejected.")
    await expect(page.locator("#inbox-count")).to_have_text("0")
    model = (await gateway.get(f"/models/{view.removeprefix('model-')}")).json()
    assert (model["state"], model["reason"]) == ("rejected", "duplicate")

    # Users: disable and enable bob, grant and revoke admin, reset his password.
    await page.goto(Shared.base + "/ui/users")
    bob = page.locator(f"#user-{OTHER}")
    await bob.get_by_role("button", name=f"Disable {OTHER}").click()
    await expect(bob).to_contain_text("disabled")
    await bob.get_by_role("button", name=f"Enable {OTHER}").click()
    await expect(bob).to_contain_text("enabled")
    await bob.get_by_role("button", name=f"Grant admin {OTHER}").click()
    await expect(bob.locator("td").nth(1)).to_have_text("admin, user")
    await bob.get_by_role("button", name=f"Revoke admin {OTHER}").click()
    await expect(bob.locator("td").nth(1)).to_have_text("user")
    await bob.get_by_label(f"New password {OTHER}").fill("bob-new-password")
    await bob.get_by_role("button", name="Reset password").click()
    await expect(page.locator(".flash.ok")).to_have_text(f"{OTHER}: done.")
    token = await gateway.post(
        "/auth/token", data={"username": OTHER, "password": "bob-new-password"}
    )
    assert token.status_code == 200, token.text

    await page.goto(Shared.base + "/ui/operations")
    await expect(page.locator("#health-console")).to_contain_text("ok")
    await expect(page.locator("#jobs tbody tr").first).to_contain_text("model")
    await shot(page, artifacts, "operations")
    await page.close()


async def focused(page: Page) -> str:
    return await page.evaluate(
        "(() => { const e = document.activeElement; return e.id || e.className || e.tagName; })()"
    )


async def test_korean_from_the_browser_with_a_switch_and_the_keyboard_alone(
    platform: object, browser: Browser, artifacts: Path
) -> None:
    context = await new_context(browser, locale="ko-KR")
    korean = await context.new_page()
    await korean.goto(Shared.base + "/ui/signin")
    await expect(korean.get_by_role("button", name="로그인")).to_be_visible()
    # Signed in with the keyboard only: the username field has the focus on arrival.
    assert await focused(korean) == "username"
    await korean.keyboard.type(USER)
    await korean.keyboard.press("Tab")
    assert await focused(korean) == "password"
    await korean.keyboard.type(USER_PASSWORD)
    await korean.keyboard.press("Enter")
    await expect(korean.locator("h1")).to_have_text("내 요청")
    # The first Tab reaches the skip link, which takes the focus to the content.
    await korean.keyboard.press("Tab")
    assert await focused(korean) == "skip"
    await korean.keyboard.press("Enter")
    assert await focused(korean) == "main"
    await shot(korean, artifacts, "my-requests-ko")
    await korean.get_by_role("link", name="English").click()
    await expect(korean.locator("h1")).to_have_text("My requests")
    await context.close()


async def test_a_session_outlives_its_access_token_by_refreshing_it(
    platform: tuple[Platform, httpx.AsyncClient], admin: BrowserContext
) -> None:
    """The admin signed in at the start of the module; its first access token has expired."""
    assert Shared.admin_signed_in_at, "the first test signs the admin in"
    waited = time.monotonic() - Shared.admin_signed_in_at
    if waited < ACCESS_TOKEN_TTL_S + 5:
        await asyncio.sleep(ACCESS_TOKEN_TTL_S + 5 - waited)
    page = await admin.new_page()
    await page.goto(Shared.base + "/ui/inbox")
    await expect(page.locator("#menu-inbox")).to_be_visible()
    assert "/ui/inbox" in page.url and "signin" not in page.url
    await page.close()
