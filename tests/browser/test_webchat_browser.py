"""The web-chat widget in a real headless Chromium against the real app on loopback (issue 3).

Everything is asserted as the customer sees it: the bubbles in the widget (its open shadow root), their
text and state, the status line. Answers are checked against the sample shop's knowledge base
(knowledge_base/faq/), the same files the server loads. Screenshots of every step go to
test-artifacts/<test name>/ (git-ignored) for a person to look at. Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.clock import SystemClock
from bot.config import Settings
from bot.knowledge import load_dir
from bot.models import FaqEntry
from bot.normalize import to_traditional
from bot.storage.sqlite import SqliteStore
from tests.browser.conftest import ROOT, LiveServer, shown_lines

pytest.importorskip("playwright.async_api")
from playwright.async_api import Page, expect  # noqa: E402

WAIT = 5000        # ms: the bound on every ordinary wait in this module
RECOVER = 20000    # ms: the bound on a reconnect after the server comes back (backoff is capped at 15 s)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 667}

KB: dict[str, FaqEntry] = {e.id: e for e in load_dir(ROOT / "knowledge_base").entries}


# -- helpers --------------------------------------------------------------------------------------------

async def new_page(browser: Any, errors: list[str], *, viewport: dict[str, int] = DESKTOP,
                   locale: str = "zh-CN", phone: bool = False) -> Page:
    context = await browser.new_context(viewport=viewport, locale=locale, is_mobile=phone, has_touch=phone,
                                        device_scale_factor=2 if phone else 1)
    page: Page = await context.new_page()
    page.set_default_timeout(WAIT)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # A script smuggled in through a message would show up as a dialog: record it and dismiss it.
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return page


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), animations="disabled")


async def open_widget(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/")
    launcher = page.get_by_test_id("widget-launcher")
    await expect(launcher).to_be_visible()
    await launcher.click()
    await expect(page.get_by_test_id("widget-panel")).to_be_visible()
    await expect(page.get_by_test_id("widget-status")).to_have_attribute("data-state", "ready")


async def ask(page: Page, text: str) -> None:
    """Type in the message box and press Enter, as a customer does."""
    box = page.get_by_test_id("widget-input")
    await box.fill(text)
    await box.press("Enter")
    await expect(box).to_have_value("")


def bubbles(page: Page, who: str) -> Any:
    return page.locator(f'[data-testid="widget-message"][data-from="{who}"]')


async def expect_answer(bubble: Any, entry_id: str, *, traditional: bool = False) -> None:
    """The bubble shows the entry's standard answer, every line of it (in traditional script if asked)."""
    assert shown_lines(KB[entry_id].answer), entry_id
    for line in shown_lines(KB[entry_id].answer):
        await expect(bubble).to_contain_text(to_traditional(line) if traditional else line)


async def customer_texts(page: Page) -> list[str]:
    return [t for t in await bubbles(page, "customer").all_text_contents()]


# -- the customer's journey ----------------------------------------------------------------------------

async def test_customer_asks_clarifies_reloads_and_is_answered_in_three_scripts(
        live_shop: LiveServer, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors)

    # 1. The demo shop page, the launcher, the empty panel.
    await page.goto(f"{live_shop.base_url}/")
    await expect(page.get_by_test_id("widget-launcher")).to_be_visible()
    await shot(page, artifacts, "01-demo-page")
    await page.get_by_test_id("widget-launcher").click()
    await expect(page.get_by_test_id("widget-panel")).to_be_visible()
    await expect(page.get_by_test_id("widget-status")).to_have_attribute("data-state", "ready")
    await expect(page.get_by_test_id("widget-empty")).to_be_visible()
    await expect(page.get_by_test_id("widget-input")).to_be_focused()
    await shot(page, artifacts, "02-widget-open")

    # 2. A Chinese question from the sample KB gets its standard answer, with the norms' markup rendered.
    await ask(page, "退货运费谁出")
    mine = bubbles(page, "customer")
    await expect(mine).to_have_text(["退货运费谁出"])
    await expect(mine.first).to_have_attribute("data-state", "sent")
    answer = bubbles(page, "bot").last
    await expect(answer).to_contain_text("家居电器旗舰店")  # the opening line, once per conversation
    await expect_answer(answer, "zh-returns-shipping-fee")
    await expect(answer.locator("ol > li")).to_have_count(3)
    await expect(answer.locator("strong").filter(has_text="由本店承担")).to_have_count(1)
    await expect(page.get_by_test_id("widget-empty")).to_be_hidden()
    await shot(page, artifacts, "03-standard-answer")

    # 3. A vague question (the fee for sending a return back, or for delivery?): the bot asks which one, as
    # buttons; clicking one answers it.
    await ask(page, "运费")
    clarify = bubbles(page, "bot").last
    await expect(clarify).to_contain_text("请问您想咨询的是以下哪个问题")
    chips = page.get_by_test_id("widget-suggestion")
    await expect(chips).to_have_count(3)
    await shot(page, artifacts, "04-clarification-buttons")
    chosen = chips.nth(1)
    value = await chosen.get_attribute("data-value")
    label = await chosen.text_content()
    assert value and label
    [entry_id] = [e.id for e in KB.values() if e.question.rstrip("？?") == value.rstrip("？?")]
    await chosen.click()
    await expect(mine.last).to_have_text(label)
    await expect_answer(bubbles(page, "bot").last, entry_id)
    for n in range(3):  # a spent set of suggestions cannot be clicked again
        await expect(chips.nth(n)).to_be_disabled()
    await shot(page, artifacts, "05-suggestion-answered")

    # 4. Traditional characters are understood and answered in traditional characters.
    await ask(page, "發票怎麼開")
    await expect_answer(bubbles(page, "bot").last, "zh-invoice-how", traditional=True)
    await shot(page, artifacts, "06-traditional")

    # 5. English is understood and answered in English.
    await ask(page, "how do i return an item")
    await expect_answer(bubbles(page, "bot").last, "en-returns-how")
    await shot(page, artifacts, "07-english")

    # 6. A reload shows the whole conversation again (the panel stays open in this tab).
    asked = ["退货运费谁出", "运费", label, "發票怎麼開", "how do i return an item"]
    await expect(mine).to_have_text(asked)
    bot_count = await bubbles(page, "bot").count()
    await page.reload()
    await expect(page.get_by_test_id("widget-panel")).to_be_visible()
    await expect(page.get_by_test_id("widget-status")).to_have_attribute("data-state", "ready")
    await expect(bubbles(page, "customer")).to_have_text(asked)
    await expect(bubbles(page, "bot")).to_have_count(bot_count)
    await expect_answer(bubbles(page, "bot").last, "en-returns-how")
    for n in range(3):
        await expect(page.get_by_test_id("widget-suggestion").nth(n)).to_be_disabled()
    await shot(page, artifacts, "08-after-reload")
    assert errors == []


async def test_customer_html_is_shown_as_text_and_never_runs(
        live_shop: LiveServer, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors)
    await open_widget(page, live_shop.base_url)
    payloads = ['<img src=x onerror="window.__kefuXss=1;alert(1)">',
                "<script>window.__kefuXss=2;alert(2)</script>",
                '<b>粗体</b> &amp; <a href="javascript:alert(3)">点我</a>']
    for text in payloads:
        await ask(page, text)
        await expect(bubbles(page, "customer").last).to_have_attribute("data-state", "sent")
    await expect(bubbles(page, "customer")).to_have_text(payloads)
    await shot(page, artifacts, "01-escaped")

    log = page.get_by_test_id("widget-log")
    for tag in ("img", "script", "b", "a[href^='javascript']"):
        assert await log.locator(tag).count() == 0, tag
    assert await page.evaluate("window.__kefuXss") is None

    # The history path renders the same way after a reload.
    await page.reload()
    await expect(bubbles(page, "customer")).to_have_text(payloads)
    for tag in ("img", "script", "b"):
        assert await log.locator(tag).count() == 0, tag
    assert await page.evaluate("window.__kefuXss") is None
    await shot(page, artifacts, "02-escaped-after-reload")
    assert errors == []


async def test_offline_message_is_sent_once_after_recovery(
        live_shop: LiveServer, browser: Any, artifacts: Path) -> None:
    """The server goes down and the browser loses the network; what the customer types meanwhile is
    delivered once when both are back: not lost, not doubled."""
    errors: list[str] = []
    page = await new_page(browser, errors)
    await open_widget(page, live_shop.base_url)
    await ask(page, "退货运费谁出")
    await expect_answer(bubbles(page, "bot").last, "zh-returns-shipping-fee")

    # The server stops (1001 to every socket) and the network goes away.
    await live_shop.stop()
    await page.context.set_offline(True)
    status = page.get_by_test_id("widget-status")
    await expect(status).to_have_attribute("data-state", "offline")
    banner = page.get_by_test_id("widget-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_have_attribute("data-state", "offline")
    await shot(page, artifacts, "01-offline")

    # Typed while offline: shown at once as "sending", kept in the outbox.
    offline_text = "怎么开发票"
    await ask(page, offline_text)
    waiting = bubbles(page, "customer").filter(has_text=offline_text)
    await expect(waiting).to_have_count(1)
    await expect(waiting).to_have_attribute("data-state", "sending")
    await expect(page.get_by_test_id("widget-message-meta").last).not_to_be_empty()
    await shot(page, artifacts, "02-typed-while-offline")

    # Server and network back: the widget reconnects, sends the message once, and gets the answer.
    await live_shop.start()
    await page.context.set_offline(False)
    await expect(status).to_have_attribute("data-state", "ready", timeout=RECOVER)
    await expect(banner).to_be_hidden()
    await expect(waiting).to_have_attribute("data-state", "sent", timeout=RECOVER)
    await expect_answer(bubbles(page, "bot").last, "zh-invoice-how")
    await expect(bubbles(page, "customer")).to_have_text(["退货运费谁出", offline_text])
    await shot(page, artifacts, "03-recovered")

    # The server holds it once, and a reload shows it once.
    await page.reload()
    await expect(bubbles(page, "customer")).to_have_text(["退货运费谁出", offline_text])
    assert await stored_customer_texts(live_shop.store) == ["退货运费谁出", offline_text]
    assert await page.evaluate("localStorage.getItem('kefu.outbox')") is None
    assert errors == []


async def test_a_second_tab_shows_what_the_customer_asks_in_the_first_and_the_answer(
        live_shop: LiveServer, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    first = await new_page(browser, errors)
    await open_widget(first, live_shop.base_url)
    second = await first.context.new_page()  # the same browser: same visitor token and outbox
    second.set_default_timeout(WAIT)
    second.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    await open_widget(second, live_shop.base_url)
    await ask(first, "退货运费谁出")
    await expect_answer(bubbles(first, "bot").last, "zh-returns-shipping-fee")
    await expect(bubbles(second, "customer")).to_have_text(["退货运费谁出"])
    await expect(bubbles(second, "customer").last).to_have_attribute("data-state", "sent")
    await expect_answer(bubbles(second, "bot").last, "zh-returns-shipping-fee")
    await shot(second, artifacts, "second-tab")
    assert await customer_texts(first) == ["退货运费谁出"]  # never echoed back into the tab that sent it
    assert await stored_customer_texts(live_shop.store) == ["退货运费谁出"]
    assert errors == []


async def test_server_restart_alone_the_widget_reconnects_by_itself(
        live_shop: LiveServer, browser: Any, artifacts: Path) -> None:
    """No network change the browser could notice: the socket drops and the widget's backoff brings it back."""
    errors: list[str] = []
    page = await new_page(browser, errors)
    await open_widget(page, live_shop.base_url)
    await ask(page, "可以开发票吗")
    await expect(bubbles(page, "bot")).to_have_count(1)

    await live_shop.stop()
    status = page.get_by_test_id("widget-status")
    await expect(status).to_have_attribute("data-state", "waiting")
    await expect(page.get_by_test_id("widget-banner")).to_be_visible()
    await ask(page, "退货运费谁出")
    pending = bubbles(page, "customer").filter(has_text="退货运费谁出")
    await expect(pending).to_have_attribute("data-state", "sending")
    await shot(page, artifacts, "01-server-down")

    await live_shop.start()
    await expect(status).to_have_attribute("data-state", "ready", timeout=RECOVER)
    await expect(pending).to_have_attribute("data-state", "sent", timeout=RECOVER)
    await expect_answer(bubbles(page, "bot").last, "zh-returns-shipping-fee")
    await expect(bubbles(page, "customer")).to_have_text(["可以开发票吗", "退货运费谁出"])
    assert await stored_customer_texts(live_shop.store) == ["可以开发票吗", "退货运费谁出"]
    await shot(page, artifacts, "02-back")
    assert errors == []


async def settled(locator: Any) -> None:
    """Wait for the element's CSS transitions and animations to finish (bounded by the page timeout)."""
    await locator.evaluate("n => Promise.all(n.getAnimations({subtree: true}).map(a => a.finished))")


async def stored_customer_texts(store: SqliteStore) -> list[str]:
    texts = []
    for conv in await store.conversations():
        texts += [e.data["text"] for e in await store.events(conv) if e.type == "customer_message"]
    return texts


async def test_phone_width_full_screen_panel_is_usable(live_shop: LiveServer, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors, viewport=PHONE, phone=True)
    await page.goto(f"{live_shop.base_url}/")
    launcher = page.get_by_test_id("widget-launcher")
    await expect(launcher).to_be_visible()
    await settled(launcher)
    box = await launcher.bounding_box()
    assert box and box["x"] + box["width"] <= PHONE["width"] and box["y"] + box["height"] <= PHONE["height"]
    assert box["width"] >= 44 and box["height"] >= 44  # a finger-sized target
    await shot(page, artifacts, "01-phone-page")

    await launcher.tap()
    panel = page.get_by_test_id("widget-panel")
    await expect(panel).to_be_visible()
    await expect(page.get_by_test_id("widget-status")).to_have_attribute("data-state", "ready")
    await settled(panel)  # the panel slides in: measure where it comes to rest
    panel_box = await panel.bounding_box()
    assert panel_box is not None
    assert (round(panel_box["x"]), round(panel_box["y"])) == (0, 0)
    assert round(panel_box["width"]) == PHONE["width"] and round(panel_box["height"]) == PHONE["height"]
    await expect(launcher).to_be_hidden()  # the full-screen panel has its own close button

    box_in = await page.get_by_test_id("widget-input").bounding_box()
    send = await page.get_by_test_id("widget-send").bounding_box()
    assert box_in and send
    for b in (box_in, send):
        assert b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] and b["y"] + b["height"] <= PHONE["height"]
    await page.get_by_test_id("widget-input").fill("退货运费谁出")
    await page.get_by_test_id("widget-send").tap()
    answer = bubbles(page, "bot").last
    await expect_answer(answer, "zh-returns-shipping-fee")
    bubble_box = await answer.bounding_box()
    assert bubble_box and bubble_box["x"] >= 0 and bubble_box["x"] + bubble_box["width"] <= PHONE["width"]
    overflow = await page.get_by_test_id("widget-log").evaluate("n => n.scrollWidth - n.clientWidth")
    assert overflow <= 0  # nothing sticks out sideways
    await shot(page, artifacts, "02-phone-answer")

    await page.get_by_test_id("widget-close").tap()
    await expect(panel).to_be_hidden()
    await expect(launcher).to_be_visible()
    await shot(page, artifacts, "03-phone-closed")
    assert errors == []


# -- embedded on another origin ------------------------------------------------------------------------

SHOP_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>别家的店</title></head>
<body><h1>别家的店</h1>
<script src="{server}/static/webchat/widget.js" data-server="{server}" data-lang="zh" async></script>
</body></html>"""


async def shop_site(server_url: str) -> tuple[web.AppRunner, str]:
    """A shop's own page on another loopback port (another origin) embedding the widget with one tag."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=SHOP_PAGE.format(server=server_url), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_widget_embedded_on_an_allowed_origin_works_and_elsewhere_stays_away(
        settings: Settings, tmp_path: Path, browser: Any, artifacts: Path) -> None:
    # The kefu server's port is fixed first, so the shop pages can name it before it starts.
    clock = SystemClock(settings.shop.tz)
    store = SqliteStore(str(tmp_path / "embed.sqlite3"), clock)
    probe = LiveServer(settings, store, clock)
    await probe.start()
    port = probe.port
    await probe.stop()
    allowed_runner, allowed = await shop_site(f"http://127.0.0.1:{port}")
    other_runner, other = await shop_site(f"http://127.0.0.1:{port}")
    webchat = replace(settings.channels.webchat, allowed_origins=(allowed,))
    server = LiveServer(replace(settings, channels=replace(settings.channels, webchat=webchat)), store, clock)
    server.port = port
    await server.start()
    errors: list[str] = []
    try:
        page = await new_page(browser, errors)
        await page.goto(allowed)
        await page.get_by_test_id("widget-launcher").click()
        await expect(page.get_by_test_id("widget-status")).to_have_attribute("data-state", "ready")
        await ask(page, "退货运费谁出")
        await expect_answer(bubbles(page, "bot").last, "zh-returns-shipping-fee")
        await shot(page, artifacts, "01-embedded-on-the-shop")

        # Another origin: the browser withholds the config (no CORS header), so no widget appears.
        stranger = await new_page(browser, errors)
        async with stranger.expect_console_message(lambda m: "CORS" in m.text or "Access-Control" in m.text):
            await stranger.goto(other)
        await expect(stranger.get_by_test_id("widget-launcher")).to_have_count(0)
        await shot(stranger, artifacts, "02-not-allowed")
    finally:
        await server.stop()
        await allowed_runner.cleanup()
        await other_runner.cleanup()
        await store.close()
    assert errors == []
