"""The agent console in a real browser against the real app (issue 5).

A customer on the demo page asks for a person in the web-chat widget; an agent logs in at /console, claims the
conversation, reads the history, replies; the customer sees the reply; the agent hands back to the bot and the
bot answers the customer's next FAQ question. Screenshots of every step go to test-artifacts/<test name>/.
Every wait is bounded (WAIT ms); nothing sleeps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import appkeys
from tests.browser.conftest import AGENT, COLLEAGUE, ROOT, SUPERVISOR, LiveApp, shown_lines

pytest.importorskip("playwright.async_api")
from playwright.async_api import Page, expect  # noqa: E402

WAIT = 5000  # ms: the bound on every wait in this module
VIEWPORT = {"width": 1280, "height": 800}
XSS = "<img src=x onerror=alert(1)>"

# The widget's hooks (adapters/webchat_static/widget.js, docs/webchat-protocol.md).
WIDGET_LAUNCHER = "widget-launcher"
WIDGET_INPUT = "widget-input"
WIDGET_SEND = "widget-send"
WIDGET_MESSAGE = "widget-message"


async def new_page(browser: Any, errors: list[str], locale: str = "zh-CN") -> Page:
    context = await browser.new_context(viewport=VIEWPORT, locale=locale)
    page: Page = await context.new_page()
    page.set_default_timeout(WAIT)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # A script injected through customer text would show up as a dialog: record it and dismiss it.
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return page


async def log_in(page: Page, base_url: str, password: str = AGENT[1], username: str = AGENT[0]) -> None:
    await page.goto(f"{base_url}/console")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()


def history(page: Page, who: str) -> Any:
    return page.locator(f'[data-testid="history-item"][data-from="{who}"]')


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), animations="disabled")


async def customer_over_socket(base_url: str, session: aiohttp.ClientSession, *texts: str) -> aiohttp.ClientWebSocketResponse:
    """A web-chat customer without a browser: hello, then each text, waiting for the bot's answer to each."""
    ws = await session.ws_connect(f"{base_url.replace('http', 'ws', 1)}/ws/chat")
    await ws.send_json({"type": "hello", "token": None, "lang": "zh"})
    assert (await ws.receive_json(timeout=WAIT / 1000))["type"] == "welcome"
    for n, text in enumerate(texts):
        await ws.send_json({"type": "message", "id": f"c-{n}", "text": text})
        while True:
            frame = await ws.receive_json(timeout=WAIT / 1000)
            if frame["type"] == "typing" and frame.get("on") is False:
                break
    return ws


async def test_wrong_password_shows_an_error_and_the_right_one_opens_the_workspace(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors)
    await page.goto(f"{live_app.base_url}/console")
    await expect(page.get_by_test_id("login-submit")).to_be_visible(timeout=WAIT)
    await shot(page, artifacts, "01-login")

    await log_in(page, live_app.base_url, password="not-the-password")
    error = page.get_by_test_id("login-error")
    await expect(error).to_be_visible(timeout=WAIT)
    await expect(error).to_have_text(strings("zh")["login.error.invalid"], timeout=WAIT)
    await expect(page.get_by_test_id("queue-list")).to_be_hidden(timeout=WAIT)
    await shot(page, artifacts, "02-wrong-password")

    # Keyboard only: Enter in the password field submits the form.
    await page.get_by_test_id("login-password").fill(AGENT[1])
    await page.get_by_test_id("login-password").press("Enter")
    await expect(page.get_by_test_id("logout")).to_be_visible(timeout=WAIT)
    await expect(page.get_by_test_id("me-name")).to_have_text(AGENT[2], timeout=WAIT)
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=WAIT)
    await shot(page, artifacts, "03-workspace")

    # Status toggle and logout go through the API (the CSRF header is sent, or they would be 403).
    toggle = page.get_by_test_id("status-toggle")
    await toggle.click()
    await expect(toggle).to_have_attribute("data-status", "away", timeout=WAIT)
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("login-submit")).to_be_visible(timeout=WAIT)
    await page.reload()
    await expect(page.get_by_test_id("login-submit")).to_be_visible(timeout=WAIT)

    # A browser set to English gets the English texts.
    english = await new_page(browser, errors, locale="en-US")
    await english.goto(f"{live_app.base_url}/console")
    await expect(english.get_by_test_id("login-submit")).to_have_text(strings("en")["login.submit"], timeout=WAIT)
    assert errors == []


async def test_norms_warning_while_typing_and_customer_markup_shown_literally(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        ws = await customer_over_socket(live_app.base_url, session, XSS, "转人工")
        page = await new_page(browser, errors)
        await log_in(page, live_app.base_url)
        item = page.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await expect(item.get_by_test_id("priority-badge")).to_have_text(strings("zh")["priority.normal"], timeout=WAIT)
        # Keyboard: a focused queue row opens with Enter.
        await item.focus()
        await page.keyboard.press("Enter")
        await page.get_by_test_id("claim").click()
        await expect(page.get_by_test_id("my-conversation")).to_have_count(1, timeout=WAIT)
        await expect(page.get_by_test_id("reply-input")).to_be_enabled(timeout=WAIT)

        # The customer's text is text: no <img> element, no script run, the characters shown as typed.
        first = history(page, "customer").first
        await expect(first).to_contain_text(XSS, timeout=WAIT)
        assert await page.get_by_test_id("history").locator("img").count() == 0

        await page.get_by_test_id("reply-input").fill("你自己看吧")
        warning = page.get_by_test_id("norms-warning")
        await expect(warning).to_be_visible(timeout=WAIT)
        zh = strings("zh")
        await expect(warning).to_contain_text(zh["warn.informal_you"], timeout=WAIT)
        await expect(warning).to_contain_text("你自己看", timeout=WAIT)
        await shot(page, artifacts, "01-norms-warning")

        # The hint never blocks: a polite rewrite clears it, and the reply goes out.
        await page.get_by_test_id("reply-input").fill("您好，请您稍等，我马上为您查询。")
        await expect(warning).to_be_hidden(timeout=WAIT)
        await page.get_by_test_id("send").click()
        await expect(history(page, "agent").filter(has_text="我马上为您查询")).to_have_count(1, timeout=WAIT)
        await shot(page, artifacts, "02-replied")
        await ws.close()
    assert errors == []


async def test_a_question_the_bot_promised_to_come_back_on_reaches_an_agent_with_the_question(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    """The fallback asks for a contact; the ticket it opens is queued for agents, and its card shows the question
    (it showed only the contact, and the conversation reached no agent before the ticket was overdue)."""
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        ws = await customer_over_socket(live_app.base_url, session, "火星上的天气怎么样，会下雨吗",
                                        "我的电话是 13812345678")
        page = await new_page(browser, errors)
        await log_in(page, live_app.base_url)
        item = page.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await item.click()
        await page.get_by_test_id("claim").click()
        question = page.get_by_test_id("ticket-question")
        await expect(question).to_contain_text("火星上的天气怎么样，会下雨吗", timeout=WAIT)
        await expect(page.get_by_test_id("ticket-contact")).to_contain_text("13812345678", timeout=WAIT)
        await shot(page, artifacts, "01-question-ticket")
        await ws.close()
    assert errors == []


async def test_note_transfer_close_and_a_supervisor_alert(live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    note = "客户情绪激动，已报主管"
    async with aiohttp.ClientSession() as session:
        ws = await customer_over_socket(live_app.base_url, session, "快递一直不到，我要投诉", "转人工")
        wang = await new_page(browser, errors)
        li = await new_page(browser, errors)
        boss = await new_page(browser, errors)
        await log_in(wang, live_app.base_url)
        await log_in(li, live_app.base_url, COLLEAGUE[1], COLLEAGUE[0])
        await log_in(boss, live_app.base_url, SUPERVISOR[1], SUPERVISOR[0])
        item = wang.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        conversation_id = await item.get_attribute("data-conversation-id")
        await item.click()
        await wang.get_by_test_id("claim").click()
        await expect(wang.get_by_test_id("reply-input")).to_be_enabled(timeout=WAIT)
        # The other agent's queue empties live.
        await expect(li.get_by_test_id("queue-item")).to_have_count(0, timeout=WAIT)

        # An internal note: shown as a note, never sent to the customer.
        await wang.get_by_test_id("note-toggle").click()
        await expect(wang.get_by_test_id("note-toggle")).to_have_attribute("aria-pressed", "true", timeout=WAIT)
        await wang.get_by_test_id("reply-input").fill(note)
        await wang.get_by_test_id("send").click()
        noted = wang.locator('[data-testid="history-item"][data-note="true"]')
        await expect(noted).to_have_text(re.compile(note), timeout=WAIT)
        await shot(wang, artifacts, "01-internal-note")

        # A reply the channel gave up delivering shows up live as a system line.
        channel, _, customer = str(conversation_id).partition(":")
        await live_app.app[appkeys.ENGINE].record_undelivered(channel, customer, errcode=45047, errmsg="out of limit")
        undelivered = strings("zh")["sys.delivery_failed"].replace("{code}", "45047")
        await expect(history(wang, "system").filter(has_text=undelivered)).to_have_count(1, timeout=WAIT)

        # A supervisor alert (what the wait check publishes on the bus) shows as a red banner to the supervisor.
        await live_app.store.publish("console", {"kind": "alert", "alert": "wait_exceeded",
                                                 "conversation_id": conversation_id, "minutes": 7})
        banner = boss.get_by_test_id("alert-banner")
        await expect(banner).to_be_visible(timeout=WAIT)
        await expect(banner).to_contain_text("7", timeout=WAIT)
        await shot(boss, artifacts, "02-supervisor-alert")
        await boss.get_by_test_id("alert-open").click()
        await expect(boss.get_by_test_id("history-item").first).to_be_visible(timeout=WAIT)
        await boss.get_by_test_id("alert-dismiss").click()
        await expect(banner).to_be_hidden(timeout=WAIT)

        # Transfer to the colleague, who sees it arrive and closes it with a complaint category.
        await wang.get_by_test_id("transfer").click()
        await wang.locator(f'[data-testid="transfer-agent"][data-username="{COLLEAGUE[0]}"]').click()
        await expect(wang.get_by_test_id("my-conversation")).to_have_count(0, timeout=WAIT)
        mine = li.get_by_test_id("my-conversation")
        await expect(mine).to_have_count(1, timeout=WAIT)
        await mine.click()
        await expect(history(li, "system").filter(has_text=COLLEAGUE[2])).not_to_have_count(0, timeout=WAIT)
        await li.get_by_test_id("close").click()
        await li.get_by_test_id("close-resolved").select_option("false")
        await li.get_by_test_id("close-category").select_option("logistics")
        await shot(li, artifacts, "03-close-dialog")
        await li.get_by_test_id("close-confirm").click()
        await expect(mine).to_have_count(0, timeout=WAIT)
        await expect(li.get_by_test_id("conv-status")).to_have_text(strings("zh")["cstatus.closed"], timeout=WAIT)
        zh = strings("zh")
        closed_line = zh["sys.closed_complaint"].replace("{closed}", zh["sys.closed_unresolved"]).replace(
            "{category}", zh["category.logistics"])
        await expect(history(li, "system").filter(has_text=closed_line)).to_have_count(1, timeout=WAIT)
        await shot(li, artifacts, "04-closed")

        frames = []
        while not ws.closed:
            try:
                frames.append(await ws.receive_json(timeout=0.5))
            except (TimeoutError, TypeError):
                break
        assert all(note not in json.dumps(f, ensure_ascii=False) for f in frames)
        await ws.close()
    closed = [e for e in await live_app.store.events(conversation_id) if e.type == "closed"]
    assert closed[-1].data["category"] == "logistics" and closed[-1].data["resolved"] is False
    assert errors == []


async def test_customer_asks_for_a_person_agent_replies_transfers_hands_back_and_closes(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    """The whole handoff in two browsers' worth of contexts: a customer in the widget, two agents in the console."""
    errors: list[str] = []
    customer = await new_page(browser, errors)
    agent = await new_page(browser, errors)
    colleague = await new_page(browser, errors)
    renderer = live_app.app[appkeys.ENGINE].renderer

    # 1. The customer opens the widget on the demo page and asks for a person; they are told their place.
    await customer.goto(f"{live_app.base_url}/")
    await customer.get_by_test_id(WIDGET_LAUNCHER).click()
    await customer_says(customer, "转人工")
    queued = widget_messages(customer).filter(has_text="已为您转接人工客服")
    await expect(queued).to_have_count(1, timeout=WAIT)
    await expect(queued).to_contain_text("第 1 位", timeout=WAIT)
    await shot(customer, artifacts, "01-customer-asks-for-a-person")

    # 2. The agent logs in through the login page and sees the conversation waiting in the queue.
    await log_in(agent, live_app.base_url)
    await log_in(colleague, live_app.base_url, COLLEAGUE[1], COLLEAGUE[0])
    waiting = agent.get_by_test_id("queue-item")
    await expect(waiting).to_have_count(1, timeout=WAIT)
    await expect(waiting).to_contain_text("转人工", timeout=WAIT)
    await expect(waiting.get_by_test_id("queue-position")).to_contain_text("1", timeout=WAIT)
    await shot(agent, artifacts, "02-agent-sees-the-queue")

    # 3. The agent opens it, reads the history, and sees the customer typing before anything is sent.
    await waiting.click()
    await expect(history(agent, "customer").filter(has_text="转人工")).to_have_count(1, timeout=WAIT)
    await customer.get_by_test_id(WIDGET_INPUT).fill("我的订单号是E20261118000123")
    typing = agent.get_by_test_id("customer-typing")
    await expect(typing).to_be_visible(timeout=WAIT)
    await shot(agent, artifacts, "03-agent-sees-the-customer-typing")
    await customer.get_by_test_id(WIDGET_INPUT).press("Enter")
    await expect(history(agent, "customer").filter(has_text="E20261118000123")).to_have_count(1, timeout=WAIT)
    await expect(typing).to_be_hidden(timeout=WAIT)

    # 4. Claim: the queue empties, the conversation is the agent's, the customer is told who joined.
    await agent.get_by_test_id("claim").click()
    await expect(waiting).to_have_count(0, timeout=WAIT)
    await expect(agent.get_by_test_id("my-conversation")).to_have_count(1, timeout=WAIT)
    await expect(agent.get_by_test_id("claim")).to_be_hidden(timeout=WAIT)
    await expect(history(agent, "system").filter(has_text=AGENT[2])).not_to_have_count(0, timeout=WAIT)
    await expect(colleague.get_by_test_id("queue-item")).to_have_count(0, timeout=WAIT)
    await expect_lines(widget_messages(customer).last,
                       renderer.render("agent_joined", "zh", agent_name=AGENT[2]))
    await shot(agent, artifacts, "04-agent-claimed")

    # 5. The agent types (the customer sees "typing") and replies; the customer sees the reply.
    reply = "您好，我是客服小王，您的订单我马上为您查询，请您稍等。"
    await agent.get_by_test_id("reply-input").fill(reply)
    agent_typing = customer.get_by_test_id("widget-typing")
    await expect(agent_typing).to_be_visible(timeout=WAIT)
    await expect(agent_typing).to_have_attribute("data-from", "agent", timeout=WAIT)
    await shot(customer, artifacts, "05-customer-sees-the-agent-typing")
    await agent.get_by_test_id("send").click()
    await expect(history(agent, "agent").filter(has_text=reply)).to_have_count(1, timeout=WAIT)
    await expect(agent.get_by_test_id("reply-input")).to_have_value("", timeout=WAIT)
    from_agent = customer.locator('[data-testid="widget-message"][data-from="agent"]')
    await expect(from_agent.filter(has_text=reply)).to_have_count(1, timeout=WAIT)
    await expect(agent_typing).to_be_hidden(timeout=WAIT)
    await shot(agent, artifacts, "06-agent-replied")
    await shot(customer, artifacts, "07-customer-sees-the-reply")

    # 6. The customer answers; the agent sees it live.
    await customer_says(customer, "好的，谢谢")
    await expect(history(agent, "customer").filter(has_text="好的，谢谢")).to_have_count(1, timeout=WAIT)

    # 7. Transfer to the colleague: it leaves the agent's list, arrives in the colleague's, the customer is told.
    await agent.get_by_test_id("transfer").click()
    await agent.locator(f'[data-testid="transfer-agent"][data-username="{COLLEAGUE[0]}"]').click()
    await expect(agent.get_by_test_id("my-conversation")).to_have_count(0, timeout=WAIT)
    theirs = colleague.get_by_test_id("my-conversation")
    await expect(theirs).to_have_count(1, timeout=WAIT)
    await expect_lines(widget_messages(customer).last,
                       renderer.render("transferred", "zh", agent_name=COLLEAGUE[2]))
    # The transfer line in the history names both agents (the item's sender is "system", the holder "from_agent").
    moved = history(agent, "system").filter(has_text=COLLEAGUE[2]).filter(has_text=AGENT[2])
    await expect(moved).to_have_count(1, timeout=WAIT)
    await theirs.click()
    await expect(history(colleague, "agent").filter(has_text=reply)).to_have_count(1, timeout=WAIT)
    await shot(colleague, artifacts, "08-colleague-received-the-transfer")
    await shot(customer, artifacts, "09-customer-told-of-the-transfer")

    # 8. Back to the bot: the customer is told, and the bot answers the next FAQ question.
    await colleague.get_by_test_id("release").click()
    await expect(theirs).to_have_count(0, timeout=WAIT)
    await expect(colleague.get_by_test_id("release")).to_be_hidden(timeout=WAIT)
    await expect(colleague.get_by_test_id("conv-status")).to_have_text(strings("zh")["cstatus.bot"], timeout=WAIT)
    await expect_lines(widget_messages(customer).last, renderer.render("released_to_bot", "zh"))
    await shot(colleague, artifacts, "10-returned-to-the-bot")
    await customer_says(customer, "可以开发票吗")
    await expect(widget_messages(customer).filter(has_text="申请发票")).to_have_count(1, timeout=WAIT)
    await shot(customer, artifacts, "11-bot-answers-again")

    # 9. A person once more; this time the agent closes it. The customer gets the closing words, then the
    #    satisfaction survey (both from the templates), and rates with one click.
    await customer_says(customer, "还是转人工吧")
    item = agent.get_by_test_id("queue-item")
    await expect(item).to_have_count(1, timeout=WAIT)
    await item.click()
    await agent.get_by_test_id("claim").click()
    await expect(agent.get_by_test_id("close")).to_be_visible(timeout=WAIT)
    await agent.get_by_test_id("close").click()
    await agent.get_by_test_id("close-resolved").select_option("true")
    await agent.get_by_test_id("close-confirm").click()
    await expect(agent.get_by_test_id("conv-status")).to_have_text(strings("zh")["cstatus.closed"], timeout=WAIT)
    await expect(history(agent, "system").filter(has_text=strings("zh")["sys.closed_resolved"])).to_have_count(
        1, timeout=WAIT)
    await expect_lines(widget_messages(customer).last, renderer.render("goodbye", "zh"))
    await shot(agent, artifacts, "12-agent-closed")

    assert await live_app.app[appkeys.ENGINE].followups.run_due() == 1  # the survey (no delay in this app)
    survey = widget_messages(customer).last
    await expect_lines(survey, renderer.render("survey", "zh"))
    ratings = customer.get_by_test_id("widget-suggestion")
    await expect(ratings).to_have_count(5, timeout=WAIT)
    await expect(ratings.first).to_have_text(renderer.render("label_rating_5", "zh"), timeout=WAIT)
    await shot(customer, artifacts, "13-customer-gets-the-survey")
    await ratings.first.click()
    await expect_lines(widget_messages(customer).last, renderer.render("rating_thanks", "zh", score=5))
    await shot(customer, artifacts, "14-customer-rated")
    assert errors == []


async def expect_lines(locator: Any, text: str) -> None:
    """The message shows every line of a rendered template (markup as the page renders it)."""
    lines = shown_lines(text)
    assert lines, text
    for line in lines:
        await expect(locator).to_contain_text(line, timeout=WAIT)


async def customer_says(page: Page, text: str) -> None:
    await page.get_by_test_id(WIDGET_INPUT).fill(text)
    await page.get_by_test_id(WIDGET_SEND).click()


def widget_messages(page: Page) -> Any:
    return page.get_by_test_id(WIDGET_MESSAGE)


# -- the page's texts ---------------------------------------------------------------------------------

def strings(lang: str) -> dict[str, str]:
    data = json.loads((ROOT / "reply_templates" / lang / "console.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_console_text_exists_in_both_languages() -> None:
    """The page shows only texts from console.json: every key it names is there, in zh and in en."""
    zh, en = strings("zh"), strings("en")
    assert set(zh) == set(en)
    assert all(isinstance(v, str) and v.strip() for v in [*zh.values(), *en.values()])
    static = ROOT / "adapters" / "console_static"
    js = (static / "console.js").read_text(encoding="utf-8")
    html = (static / "console.html").read_text(encoding="utf-8")
    used = set(re.findall(r"""\bt\(\s*'([a-z_.]+)'""", js))
    used |= set(re.findall(r'data-i18n(?:-placeholder|-title|-aria)?="([a-z_.]+)"', html))
    assert used, "no string keys found"
    assert used - set(zh) == set()
    # Codes the server sends are shown through a prefix + code; the documented ones all have a label.
    for prefix, codes in {
        "priority.": ("major", "vip", "normal", "callback"),
        "category.": ("product_quality", "service_attitude", "logistics", "after_sales", "other"),
        "warn.": ("informal_you", "banned_phrase", "no_courtesy", "too_long", "empty"),
        "cstatus.": ("bot", "queued", "agent", "closed"),
        "alert.": ("wait_exceeded", "ticket_overdue"),
        "err.": ("already_claimed", "limit_reached", "not_your_conversation", "unknown_agent"),
    }.items():
        assert {prefix + c for c in codes} <= set(zh), prefix


def test_the_page_never_parses_server_data_as_html() -> None:
    """No innerHTML / outerHTML / insertAdjacentHTML / document.write anywhere in the console script."""
    js = (ROOT / "adapters" / "console_static" / "console.js").read_text(encoding="utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function", js)
