"""The admin page in a real browser against the real app (docs/admin-api.md).

An admin edits an FAQ answer, tries it, and a web-chat customer gets the new answer at once; the figures
render as charts; two admins saving the same entry never overwrite each other silently; a follow-up is
cancelled from the page. Screenshots of every step go to test-artifacts/<test>/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.auth import create_agent
from tests.browser.conftest import AGENT, ROOT, SUPERVISOR, LiveApp

pytest.importorskip("playwright.async_api")
from playwright.async_api import Page, expect  # noqa: E402

WAIT = 5000  # ms: the bound on every wait in this module
VIEWPORT = {"width": 1280, "height": 800}
STATIC = ROOT / "adapters" / "admin_static"

NEW_ANSWER = "可以的，请您在订单详情页点击**开具电子发票**，发票会在1个工作日内发送到您的邮箱。"


async def new_page(browser: Any, errors: list[str], locale: str = "zh-CN", viewport: dict[str, int] = VIEWPORT) -> Page:
    context = await browser.new_context(viewport=viewport, locale=locale)
    page: Page = await context.new_page()
    page.set_default_timeout(WAIT)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # Server data reaching the page as HTML would show up as a dialog: record it and dismiss it.
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return page


async def log_in(page: Page, base_url: str, username: str = SUPERVISOR[0], password: str = SUPERVISOR[1]) -> None:
    await page.goto(f"{base_url}/admin")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), animations="disabled")


async def open_entry(page: Page, query: str, entry_id: str) -> None:
    await page.get_by_test_id("faq-search").fill(query)
    row = page.locator(f'[data-testid="faq-row"][data-id="{entry_id}"]')
    await expect(row).to_have_count(1, timeout=WAIT)
    await row.click()
    await expect(page.get_by_test_id("faq-id")).to_have_value(entry_id, timeout=WAIT)


async def assert_drawn(page: Page, test_id: str) -> None:
    """The chart's canvas is on the page with a real size (Chart.js drew into it)."""
    canvas = page.get_by_test_id(test_id).locator("canvas").first
    await expect(canvas).to_be_visible(timeout=WAIT)
    box = await canvas.bounding_box()
    assert box is not None and box["width"] > 50 and box["height"] > 50, (test_id, box)
    drawn = await canvas.evaluate("c => c.width > 0 && c.height > 0 && !!window.Chart && !!window.Chart.getChart(c)")
    assert drawn, test_id


async def test_admin_edits_an_answer_tries_it_and_the_customer_gets_it_at_once(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    admin = await new_page(browser, errors)

    # 1. Log in.
    await admin.goto(f"{live_app.base_url}/admin")
    await expect(admin.get_by_test_id("login-submit")).to_be_visible(timeout=WAIT)
    await shot(admin, artifacts, "01-login")
    await log_in(admin, live_app.base_url)
    await expect(admin.get_by_test_id("tab-faq")).to_have_attribute("aria-selected", "true", timeout=WAIT)
    await expect(admin.get_by_test_id("me-name")).to_have_text(SUPERVISOR[2], timeout=WAIT)
    await expect(admin.get_by_test_id("faq-row")).not_to_have_count(0, timeout=WAIT)
    await shot(admin, artifacts, "02-faq-list")

    # 2. Search the FAQ and open the entry.
    await open_entry(admin, "发票", "zh-invoice")
    await expect(admin.get_by_test_id("faq-row")).to_have_count(1, timeout=WAIT)
    await expect(admin.get_by_test_id("faq-answer")).to_have_value(re.compile("申请发票"), timeout=WAIT)
    await expect(admin.get_by_test_id("faq-meta")).to_contain_text("v1", timeout=WAIT)
    await shot(admin, artifacts, "03-entry-open")

    # 3. Edit the answer: the preview renders the markup (bold as <strong>, never as asterisks).
    await admin.get_by_test_id("faq-answer").fill(NEW_ANSWER)
    preview = admin.get_by_test_id("faq-preview")
    await expect(preview.locator("strong")).to_have_text("开具电子发票", timeout=WAIT)
    await expect(preview).not_to_contain_text("**", timeout=WAIT)
    await expect(admin.get_by_test_id("faq-dirty")).to_be_visible(timeout=WAIT)
    # The preview ends with the close the bot adds after every answer (faq_answer.j2), as customers get it.
    added = admin.get_by_test_id("faq-preview-close")
    await expect(added).to_have_text("请问还有什么可以帮您的吗？", timeout=WAIT)
    await shot(admin, artifacts, "04-answer-edited")

    # 4. Save with the loaded version.
    await admin.get_by_test_id("faq-save").click()
    await expect(admin.get_by_test_id("faq-dirty")).to_be_hidden(timeout=WAIT)
    await expect(admin.get_by_test_id("faq-meta")).to_contain_text("v2", timeout=WAIT)
    await expect(admin.locator("[data-testid=faq-error]:visible")).to_have_count(0, timeout=WAIT)
    await expect(admin.get_by_test_id("faq-conflict")).to_be_hidden(timeout=WAIT)
    stored = await live_app.store.record_get("faq", "zh-invoice")
    assert stored is not None and stored["answer"] == NEW_ANSWER and stored["version"] == 2
    assert stored["updated_by"] == SUPERVISOR[0]
    await shot(admin, artifacts, "05-saved")

    # 5. "Try it" against the live KB (the draft switched off): the saved answer is what the bot says now.
    await admin.get_by_test_id("try-draft").uncheck()
    await admin.get_by_test_id("try-input").fill("怎么开发票")
    await admin.get_by_test_id("try-submit").click()
    result = admin.get_by_test_id("try-result")
    await expect(result).to_be_visible(timeout=WAIT)
    await expect(result.get_by_test_id("try-decision")).to_have_attribute("data-decision", "answer", timeout=WAIT)
    await expect(result.get_by_test_id("try-preview")).to_contain_text("开具电子发票", timeout=WAIT)
    await expect(result.locator('[data-testid="try-candidate"]').first).to_have_attribute("data-id", "zh-invoice")
    await shot(admin, artifacts, "06-try-it")

    # 6. A web-chat customer asks the question and gets the new answer at once.
    customer = await new_page(browser, errors)
    await customer.goto(f"{live_app.base_url}/")
    await customer.get_by_test_id("widget-launcher").click()
    await customer.get_by_test_id("widget-input").fill("可以开发票吗")
    await customer.get_by_test_id("widget-input").press("Enter")
    bot = customer.locator('[data-testid="widget-message"][data-from="bot"]')
    await expect(bot.filter(has_text="开具电子发票")).to_have_count(1, timeout=WAIT)
    await expect(bot.filter(has_text="开具电子发票")).to_contain_text(await added.inner_text())
    await expect(bot.filter(has_text="申请发票")).to_have_count(0)
    await shot(customer, artifacts, "07-customer-gets-the-new-answer")

    # 7. The figures: KPI cards and charts with a real size.
    await admin.get_by_test_id("tab-figures").click()
    await expect(admin.get_by_test_id("tab-figures")).to_have_attribute("aria-selected", "true", timeout=WAIT)
    await expect(admin.get_by_test_id("kpi-conversations-value")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=WAIT)
    for kpi in ("conversations", "bot_resolved_rate", "handoff_rate", "first_contact_resolution", "satisfaction_share",
                "first_response_bot", "first_response_agent", "reply_timeliness_rate", "followup_completion",
                "tickets_open"):
        await expect(admin.get_by_test_id(f"kpi-{kpi}")).to_be_visible(timeout=WAIT)
    for chart in ("chart-daily", "chart-rates", "chart-satisfaction", "chart-complaints"):
        await assert_drawn(admin, chart)
    # One day of data is one point per line: it is drawn as a dot, not left blank.
    dots = await admin.get_by_test_id("chart-rates").locator("canvas").evaluate(
        "c => Chart.getChart(c).getDatasetMeta(0).data.filter((p, i) => "
        "Chart.getChart(c).data.datasets[0].data[i] !== null && p.options.radius > 0).length")
    assert dots >= 1
    assert (await admin.get_by_test_id("figures-csv").get_attribute("href") or "").startswith("/api/admin/figures.csv?")
    await shot(admin, artifacts, "08-figures")
    await admin.get_by_test_id("chart-daily").scroll_into_view_if_needed()
    await shot(admin, artifacts, "09-figures-charts")

    # 8. The other tabs open without errors.
    await admin.get_by_test_id("tab-unanswered").click()
    await expect(admin.get_by_test_id("unanswered-groups")).to_be_attached(timeout=WAIT)
    await shot(admin, artifacts, "10-unanswered")
    await admin.get_by_test_id("tab-followups").click()
    await expect(admin.get_by_test_id("followups-table")).to_be_visible(timeout=WAIT)
    await shot(admin, artifacts, "11-followups")
    assert errors == []


async def test_two_admins_save_the_same_entry_and_the_second_sees_the_conflict(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    await create_agent(live_app.store, "chen", "password-4", display_name="主管小陈", role="admin")
    errors: list[str] = []
    first = await new_page(browser, errors)
    second = await new_page(browser, errors)
    await log_in(first, live_app.base_url)
    await log_in(second, live_app.base_url, "chen", "password-4")
    for page in (first, second):
        await open_entry(page, "运费", "zh-returns-shipping")
        await expect(page.get_by_test_id("faq-meta")).to_contain_text("v1", timeout=WAIT)

    theirs = "质量问题由本店承担来回运费；个人原因退货，请您承担寄回的运费，感谢理解。"
    mine = "您好，退货运费请联系客服确认，感谢您的耐心。"
    await first.get_by_test_id("faq-answer").fill(theirs)
    await first.get_by_test_id("faq-save").click()
    await expect(first.get_by_test_id("faq-meta")).to_contain_text("v2", timeout=WAIT)
    await shot(first, artifacts, "01-first-admin-saved")

    await second.get_by_test_id("faq-answer").fill(mine)
    await second.get_by_test_id("faq-save").click()
    conflict = second.get_by_test_id("faq-conflict")
    await expect(conflict).to_be_visible(timeout=WAIT)
    await expect(second.get_by_test_id("faq-conflict-theirs")).to_contain_text(theirs, timeout=WAIT)
    await expect(conflict).to_contain_text(SUPERVISOR[0], timeout=WAIT)  # who saved it
    await expect(second.get_by_test_id("faq-dirty")).to_be_visible()     # the second admin's edit is kept, unsaved
    await expect(second.get_by_test_id("faq-answer")).to_have_value(mine)
    await shot(second, artifacts, "02-second-admin-sees-the-conflict")

    # Nothing was overwritten: the store holds the first admin's answer at version 2.
    stored = await live_app.store.record_get("faq", "zh-returns-shipping")
    assert stored is not None and stored["answer"] == theirs and stored["version"] == 2

    # Reloading shows the current entry; saving after that is a normal save on top of it.
    await second.get_by_test_id("faq-conflict-reload").click()
    await expect(conflict).to_be_hidden(timeout=WAIT)
    await expect(second.get_by_test_id("faq-answer")).to_have_value(theirs, timeout=WAIT)
    await expect(second.get_by_test_id("faq-meta")).to_contain_text("v2", timeout=WAIT)
    await expect(second.get_by_test_id("faq-dirty")).to_be_hidden()
    await shot(second, artifacts, "03-second-admin-reloaded")
    stored = await live_app.store.record_get("faq", "zh-returns-shipping")
    assert stored is not None and stored["answer"] == theirs and stored["version"] == 2
    assert errors == []


async def test_norms_violation_needs_a_reason_and_history_restores(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors)
    await log_in(page, live_app.base_url)
    await open_entry(page, "七天", "zh-returns-7day")

    # A cold answer is refused with the norms next to the answer field; a reason lets it through.
    await page.get_by_test_id("faq-answer").fill("不知道，你自己看订单详情页。")
    await page.get_by_test_id("faq-save").click()
    answer_error = page.locator('[data-testid="faq-error"][data-field="answer"]')
    await expect(answer_error).to_be_visible(timeout=WAIT)
    await expect(answer_error.locator('[data-code="banned_phrase"]').first).to_be_visible()
    await expect(page.get_by_test_id("faq-override")).to_be_visible()
    await expect(page.get_by_test_id("faq-meta")).to_contain_text("v1")
    await shot(page, artifacts, "01-norms-blocked")
    await page.get_by_test_id("faq-override-reason").fill("测试：主管确认的例外")
    await page.get_by_test_id("faq-save").click()
    await expect(page.get_by_test_id("faq-meta")).to_contain_text("v2", timeout=WAIT)
    await expect(answer_error).to_have_count(0)
    await shot(page, artifacts, "02-saved-with-a-reason")

    # The history shows the reason; restoring v1 brings the old answer back as v3.
    await page.get_by_test_id("faq-history").click()
    items = page.get_by_test_id("history-item")
    await expect(items).to_have_count(2, timeout=WAIT)
    await expect(items.first).to_contain_text("测试：主管确认的例外")
    await shot(page, artifacts, "03-history")
    await page.locator('[data-testid="history-restore"][data-version="1"]').click()
    await page.get_by_test_id("confirm-ok").click()
    await expect(page.get_by_test_id("faq-meta")).to_contain_text("v3", timeout=WAIT)
    await expect(page.get_by_test_id("faq-answer")).to_have_value(re.compile("签收后7天内无理由退货"), timeout=WAIT)
    stored = await live_app.store.record_get("faq", "zh-returns-7day")
    assert stored is not None and stored["version"] == 3 and "签收后7天内" in stored["answer"]
    await shot(page, artifacts, "04-restored")
    assert errors == []


async def customer_asks(session: aiohttp.ClientSession, base_url: str, text: str,
                        token: str | None = None) -> tuple[str, list[str]]:
    """A web-chat customer over the socket: hello, one message; returns (token, the bot's texts for it)."""
    async with session.ws_connect(f"{base_url.replace('http', 'ws', 1)}/ws/chat") as ws:
        await ws.send_json({"type": "hello", "token": token, "lang": "zh"})
        welcome = await ws.receive_json(timeout=WAIT / 1000)
        assert welcome["type"] == "welcome"
        await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": text})  # a fresh id: no dedup
        replies: list[str] = []
        while True:
            frame = await ws.receive_json(timeout=WAIT / 1000)
            if frame["type"] == "reply":
                replies.append(frame["text"])
            if frame["type"] == "typing" and frame.get("on") is False:
                return welcome["token"], replies


async def test_unanswered_questions_become_a_phrasing_and_a_new_entry(
        live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    vat, cod = "增值税专用发票能开吗", "支持货到付款吗"
    async with aiohttp.ClientSession() as session:
        vat_token, first = await customer_asks(session, live_app.base_url, vat)
        cod_token, _ = await customer_asks(session, live_app.base_url, cod)
        assert not any("申请发票" in r for r in first)  # the bot could not answer it yet

        errors: list[str] = []
        page = await new_page(browser, errors)
        await log_in(page, live_app.base_url)
        await page.get_by_test_id("tab-unanswered").click()
        groups = page.get_by_test_id("unanswered-group")
        await expect(groups).to_have_count(2, timeout=WAIT)
        await shot(page, artifacts, "01-unanswered")

        # One click (plus a confirmation) adds the question to the suggested entry.
        vat_group = groups.filter(has_text=vat)
        await vat_group.get_by_test_id("unanswered-add").click()
        chosen = vat_group.locator('[data-testid="unanswered-entry-option"].selected')
        await expect(chosen).to_have_attribute("data-id", "zh-invoice", timeout=WAIT)
        await expect(vat_group.get_by_test_id("unanswered-text")).to_have_value(vat)
        await shot(page, artifacts, "02-add-as-phrasing")
        await vat_group.get_by_test_id("unanswered-confirm").click()
        await expect(vat_group.get_by_test_id("unanswered-added")).to_be_visible(timeout=WAIT)
        stored = await live_app.store.record_get("faq", "zh-invoice")
        assert stored is not None and vat in stored["similar"]
        await shot(page, artifacts, "03-phrasing-added")
        _, again = await customer_asks(session, live_app.base_url, vat, vat_token)
        assert any("申请发票" in r for r in again), again

        # "New entry from this" opens the editor with the question filled in.
        await groups.filter(has_text=cod).get_by_test_id("unanswered-new").click()
        await expect(page.get_by_test_id("tab-faq")).to_have_attribute("aria-selected", "true", timeout=WAIT)
        await expect(page.get_by_test_id("faq-question")).to_have_value(cod, timeout=WAIT)
        await page.get_by_test_id("faq-id").fill("zh-cash-on-delivery")
        await page.get_by_test_id("faq-answer").fill("抱歉，本店暂不支持**货到付款**，请您在线支付，感谢理解。")
        await shot(page, artifacts, "04-new-entry-prefilled")
        await page.get_by_test_id("faq-save").click()
        await expect(page.get_by_test_id("faq-meta")).to_contain_text("v1", timeout=WAIT)
        await expect(page.locator('[data-testid="faq-row"][data-id="zh-cash-on-delivery"]')).to_have_count(1, timeout=WAIT)
        await shot(page, artifacts, "05-new-entry-created")
        _, answered = await customer_asks(session, live_app.base_url, cod, cod_token)
        assert any("货到付款" in r and "在线支付" in r for r in answered), answered
        assert errors == []


async def test_pending_follow_up_is_cancelled_from_the_page(live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    due = datetime.now(timezone.utc) + timedelta(hours=3)  # live_app runs on the real clock
    job = {"id": "survey-0123456789ab", "kind": "survey", "conversation_id": "web:v_visitor0001", "due_at": due.timestamp(),
           "due": due.isoformat(), "status": "pending", "attempts": 0, "created_at": due.isoformat(), "data": {}}
    await live_app.store.job_put(job)
    errors: list[str] = []
    page = await new_page(browser, errors)
    await log_in(page, live_app.base_url)
    await page.get_by_test_id("tab-followups").click()
    row = page.locator('[data-testid="followup-row"][data-id="survey-0123456789ab"]')
    await expect(row).to_be_visible(timeout=WAIT)
    await shot(page, artifacts, "01-pending")
    await row.get_by_test_id("followup-cancel").click()
    await expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    await shot(page, artifacts, "02-confirm")
    await page.get_by_test_id("confirm-ok").click()
    await expect(row).to_have_count(0, timeout=WAIT)
    stored = await live_app.store.job_get("survey-0123456789ab")
    assert stored is not None and stored["status"] == "cancelled"
    await shot(page, artifacts, "03-cancelled")
    assert errors == []


async def test_an_agent_is_told_the_page_is_for_admins(live_app: LiveApp, browser: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page = await new_page(browser, errors)
    await log_in(page, live_app.base_url, password="wrong-password")
    await expect(page.get_by_test_id("login-error")).to_have_text(strings("zh")["login.error.invalid"], timeout=WAIT)
    await log_in(page, live_app.base_url, AGENT[0], AGENT[1])
    denied = page.get_by_test_id("login-denied")
    await expect(denied).to_be_visible(timeout=WAIT)
    await expect(denied).to_contain_text(AGENT[2])
    await expect(page.get_by_test_id("tab-faq")).to_be_hidden()
    await shot(page, artifacts, "01-agent-denied")

    english = await new_page(browser, errors, locale="en-US", viewport={"width": 1024, "height": 768})
    await english.goto(f"{live_app.base_url}/admin")
    await expect(english.get_by_test_id("login-submit")).to_have_text(strings("en")["login.submit"], timeout=WAIT)
    await log_in(english, live_app.base_url)
    await expect(english.get_by_test_id("tab-figures")).to_have_text(strings("en")["tab.figures"], timeout=WAIT)
    await english.get_by_test_id("tab-figures").click()
    await assert_drawn(english, "chart-daily")
    await shot(english, artifacts, "02-english-1024")
    assert errors == []


# -- the page's texts and code ------------------------------------------------------------------------

def strings(lang: str) -> dict[str, str]:
    data = json.loads((ROOT / "reply_templates" / lang / "admin.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_admin_text_exists_in_both_languages() -> None:
    """The page shows only texts from admin.json: every key it names is there, in zh and in en."""
    zh, en = strings("zh"), strings("en")
    assert set(zh) == set(en)
    assert all(isinstance(v, str) and v.strip() for v in [*zh.values(), *en.values()])
    js = (STATIC / "admin.js").read_text(encoding="utf-8")
    html = (STATIC / "admin.html").read_text(encoding="utf-8")
    used = set(re.findall(r"""\btn?\(\s*'([a-z_.0-9]+)'""", js))
    used |= set(re.findall(r'data-i18n(?:-placeholder|-title|-aria)?="([a-z_.0-9]+)"', html))
    assert len(used) > 200, "string keys not found"
    assert used - set(zh) == set()
    # Codes the server sends are shown through a prefix + code; the documented ones all have a label.
    for prefix, codes in {
        "decision.": ("answer", "clarify", "fallback"),
        "change.": ("created", "updated", "disabled", "enabled", "deleted", "restored"),
        "norms.": ("informal_you", "banned_phrase", "no_courtesy", "too_long", "empty", "greeting_start",
                   "repeats_close"),
        "kpi.": ("satisfaction_share", "handoff_rate", "first_contact_resolution", "reply_timeliness_rate"),
        "channel.": ("web", "wechat"),
        "category.": ("product_quality", "service_attitude", "logistics", "after_sales", "other"),
        "fu.kind.": ("survey", "complaint_visit", "visit_expire", "nudge", "idle_close", "ticket_update"),
        "fu.status.": ("pending", "done", "cancelled", "failed", "missed", "skipped"),
    }.items():
        assert {prefix + c for c in codes} <= set(zh), prefix


def test_the_page_never_parses_server_data_as_html() -> None:
    """No innerHTML / outerHTML / insertAdjacentHTML / document.write anywhere in the admin script."""
    js = (STATIC / "admin.js").read_text(encoding="utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function", js)


def test_the_vendored_chart_library_is_named_and_licensed() -> None:
    """Chart.js is served from our own files (no CDN), with its licence and the version admin.js names."""
    vendor = STATIC / "vendor"
    head = (vendor / "chart.umd.min.js").read_text(encoding="utf-8")[:200]
    version = re.search(r"Chart\.js v(\d+\.\d+\.\d+)", head)
    assert version is not None
    assert f"Chart.js {version.group(1)} (MIT)" in (STATIC / "admin.js").read_text(encoding="utf-8")
    assert "MIT License" in (vendor / "chart.js.LICENSE.md").read_text(encoding="utf-8")
    html = (STATIC / "admin.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']https?://""", html)
