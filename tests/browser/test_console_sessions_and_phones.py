"""The console and admin pages on a phone, a logout reaching the session's other tabs, and the claim limit.

Real Chromium against the real app, as in test_console_browser.py; every wait is bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.auth import create_agent
from tests.browser.conftest import SUPERVISOR, LiveApp
from tests.browser.test_console_browser import WAIT, customer_over_socket, log_in, new_page, shot, strings

pytest.importorskip("playwright.async_api")
from playwright.async_api import Page, expect  # noqa: E402

PHONE = {"width": 375, "height": 667}


async def phone_page(browser: Any, errors: list[str]) -> Page:
    context = await browser.new_context(viewport=PHONE, locale="zh-CN", has_touch=True)
    page: Page = await context.new_page()
    page.set_default_timeout(WAIT)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return page


async def assert_on_screen(page: Page, test_id: str) -> None:
    box = await page.get_by_test_id(test_id).bounding_box()
    assert box is not None, test_id
    assert box["x"] >= 0 and box["y"] >= 0, (test_id, box)
    assert box["x"] + box["width"] <= PHONE["width"] and box["y"] + box["height"] <= PHONE["height"], (test_id, box)


async def no_sideways_scroll(page: Page) -> None:
    wide = await page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter((n) => n.getClientRects().length && n.getBoundingClientRect().right > innerWidth + 1)
        .map((n) => n.id || n.className).slice(0, 8)""")
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"], wide


async def test_the_console_on_a_phone_keeps_its_controls_and_the_conversation_on_screen(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        ws = await customer_over_socket(live_app.base_url, session, "转人工")
        page = await phone_page(browser, errors)
        await log_in(page, live_app.base_url)
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=WAIT)
        for control in ("logout", "status-toggle"):
            await assert_on_screen(page, control)
        await page.get_by_test_id("queue-item").first.click()
        await page.get_by_test_id("claim").click()
        await expect(page.get_by_test_id("reply-input")).to_be_enabled(timeout=WAIT)
        await assert_on_screen(page, "reply-input")
        box = await page.get_by_test_id("reply-input").bounding_box()
        assert box is not None and box["width"] > 250, box  # room to write, not a 110 px sliver
        await no_sideways_scroll(page)
        await shot(page, artifacts, "console-phone")
        await page.get_by_test_id("logout").click()
        await expect(page.get_by_test_id("login-submit")).to_be_visible(timeout=WAIT)
        await ws.close()
    assert errors == []


async def test_the_admin_page_on_a_phone_keeps_its_tabs_readable_and_its_buttons_on_screen(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await phone_page(browser, errors)
    await page.goto(f"{live_app.base_url}/admin")
    await page.get_by_test_id("login-username").fill(SUPERVISOR[0])
    await page.get_by_test_id("login-password").fill(SUPERVISOR[1])
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("faq-row")).not_to_have_count(0, timeout=WAIT)
    for control in ("logout", "faq-new", "tab-faq"):
        await assert_on_screen(page, control)
    for tab in ("tab-faq", "tab-unanswered", "tab-figures", "tab-followups"):
        box = await page.get_by_test_id(tab).bounding_box()
        assert box is not None and box["height"] < 60 and box["width"] > box["height"], (tab, box)  # one line
    await no_sideways_scroll(page)
    await shot(page, artifacts, "admin-phone")
    assert errors == []


async def test_logging_out_in_one_tab_signs_out_the_others(live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    first = await new_page(browser, errors)
    await log_in(first, live_app.base_url)
    await expect(first.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=WAIT)
    second = await first.context.new_page()  # the same browser: the same session cookie
    await second.goto(f"{live_app.base_url}/console")
    await expect(second.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=WAIT)
    await first.get_by_test_id("logout").click()
    await expect(second.get_by_test_id("login-error")).to_have_text(strings("zh")["err.logged_out"], timeout=WAIT)
    await expect(second.get_by_test_id("queue-list")).to_be_hidden()
    await shot(second, artifacts, "other-tab-signed-out")
    assert errors == []


async def test_at_the_limit_the_claim_button_is_off_and_a_refusal_shows_once(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    await create_agent(live_app.store, "zhao", "password-9", display_name="小赵", max_concurrent=1)
    async with aiohttp.ClientSession() as session:
        one = await customer_over_socket(live_app.base_url, session, "转人工")
        two = await customer_over_socket(live_app.base_url, session, "转人工")
        page = await new_page(browser, errors)
        await log_in(page, live_app.base_url, "password-9", "zhao")
        queue = page.get_by_test_id("queue-item")
        await expect(queue).to_have_count(2, timeout=WAIT)
        await queue.first.click()
        await page.get_by_test_id("claim").click()
        await expect(page.get_by_test_id("my-conversation")).to_have_count(1, timeout=WAIT)
        await expect(queue).to_have_count(1, timeout=WAIT)
        await queue.first.click()
        await expect(page.get_by_test_id("claim")).to_be_disabled(timeout=WAIT)
        await expect(page.get_by_test_id("claim-limit")).to_contain_text("1", timeout=WAIT)
        await shot(page, artifacts, "claim-at-limit")
        # A console that has not heard yet (the button still on): however often it is clicked, one toast.
        await page.evaluate("for (let i = 0; i < 3; i += 1) { const b = document.getElementById('claim');"
                            " b.disabled = false; b.click(); }")
        refused = page.locator(".toast", has_text=strings("zh")["err.limit_reached"])
        await expect(refused).to_have_count(1, timeout=WAIT)
        await page.wait_for_load_state("networkidle")
        await expect(refused).to_have_count(1)
        await one.close()
        await two.close()
    assert errors == []
