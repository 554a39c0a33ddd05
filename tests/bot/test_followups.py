"""Follow-ups on the FakeClock: every kind, quiet hours, cancellation, restart, 48 hours, retries."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.assemble import build_engine
from bot.auth import create_agent
from bot.config import Settings
from bot.delivery import Delivery
from bot.engine import ConversationEngine
from bot.knowledge import KnowledgeBase
from bot.models import Event, IncomingMessage, Reply
from bot.scheduler import JobScheduler
from bot.storage.sqlite import SqliteStore
from tests.conftest import SHANGHAI
from tests.fakes import FakeClock
from tests.small_kb import ENTRIES, SYNONYMS


class FlakyOutbox:
    """Delivers, or fails the first `failures` times."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, Reply]] = []

    async def deliver(self, customer_id: str, replies: list[Reply]) -> bool:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise ConnectionError("channel down")
        self.sent.extend((customer_id, r) for r in replies)
        return True

    def texts(self) -> list[str]:
        return [r.text for _, r in self.sent]


def make(settings: Settings, store: SqliteStore, clock: FakeClock, outbox: FlakyOutbox,
         channel: str = "web") -> ConversationEngine:
    return build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS),
                        delivery=Delivery({channel: outbox}))


@pytest.fixture
def outbox() -> FlakyOutbox:
    return FlakyOutbox()


@pytest.fixture
def engine(settings: Settings, store: SqliteStore, clock: FakeClock, outbox: FlakyOutbox) -> ConversationEngine:
    return make(settings, store, clock, outbox)


async def say(engine: ConversationEngine, clock: FakeClock, text: str, customer: str = "a",
              channel: str = "web") -> str:
    return "\n".join(r.text for r in await engine.handle(IncomingMessage(channel, customer, text, clock.now())))


async def test_goodbye_closes_and_a_survey_follows_then_the_rating_is_recorded(
    engine: ConversationEngine, clock: FakeClock, store: SqliteStore, outbox: FlakyOutbox
) -> None:
    await say(engine, clock, "可以开发票吗")
    await say(engine, clock, "再见")
    assert (await engine.state("web", "a")).status == "closed"
    clock.advance(minutes=9)
    assert await engine.followups.run_due() == 0
    clock.advance(minutes=2)
    assert await engine.followups.run_due() == 1
    survey = outbox.sent[-1][1]
    assert "打个分" in survey.text and [s.value for s in survey.suggestions] == ["5", "4", "3", "2", "1"]
    assert await engine.followups.run_due() == 0  # never twice
    thanks = await say(engine, clock, "5")
    assert "好评" in thanks
    ratings = [e.data["score"] for e in await store.events("web:a") if e.type == "rating"]
    assert ratings == [5]


@pytest.mark.parametrize(("text", "score"), [("5", 5), ("5分 非常满意", 5), ("4星", 4), ("挺好的", 4), ("不错", 4),
                                            ("還可以", 3), ("非常不满意", 1), ("good", 4), ("很满意，谢谢", 5),
                                            ("不太满意", 2), ("一般般吧", 3), ("五星好评", 5),
                                            # Questions are not ratings, though they start with a digit.
                                            ("1.8米的床垫有现货吗", None), ("3 days ago I ordered a sofa", None),
                                            ("谢谢", None), ("12", None)])
def test_a_rating_in_the_customers_words(text: str, score: int | None) -> None:
    """The typed-out button ("5分 非常满意"), 挺好的 and 不错 got the fallback instead of being counted; a question
    starting with a digit ("1.8米的床垫…") was stored as a rating of 1 and never answered."""
    from bot.followups import parse_rating
    from bot.normalize import to_simplified

    assert parse_rating(to_simplified(text)) == score


async def test_rating_words_and_low_scores(engine: ConversationEngine, clock: FakeClock,
                                           outbox: FlakyOutbox) -> None:
    await say(engine, clock, "再见")
    clock.advance(minutes=11)
    await engine.followups.run_due()
    reply = await say(engine, clock, "不满意")
    assert "深表歉意" in reply and "人工" in reply


async def test_customer_writing_again_cancels_the_survey(engine: ConversationEngine, clock: FakeClock,
                                                         store: SqliteStore, outbox: FlakyOutbox) -> None:
    await say(engine, clock, "再见")
    await say(engine, clock, "对了，可以开发票吗")
    clock.advance(minutes=30)
    assert await engine.followups.run_due() == 0
    assert outbox.sent == []
    [job] = await store.jobs(conversation_id="web:a")
    assert job["status"] == "cancelled" and job["cancel_reason"] == "customer_wrote"


async def test_complaint_visit_three_days_after_close_and_no_reopens(
    engine: ConversationEngine, clock: FakeClock, store: SqliteStore, outbox: FlakyOutbox
) -> None:
    agent = await create_agent(store, "wang", "password-1")
    await say(engine, clock, "我要投诉，快递太慢了")
    await engine.desk.claim("web:a", agent)
    await engine.desk.close("web:a", agent, resolved=True, category="logistics")
    kinds = sorted(j["kind"] for j in await store.jobs(conversation_id="web:a", status="pending"))
    assert kinds == ["complaint_visit"]  # the visit asks how it went: no survey on top of it
    visit = next(j for j in await store.jobs(status="pending") if j["kind"] == "complaint_visit")
    assert datetime.fromisoformat(visit["due"]) == datetime(2026, 11, 27, 10, 0, tzinfo=SHANGHAI)
    clock.advance(days=3)
    await engine.followups.run_due()
    assert any("回访" in t for t in outbox.texts())
    reply = await say(engine, clock, "没有解决")
    assert "优先安排" in reply
    assert [c for c, _ in await store.queue_items()] == ["web:a"]
    result = [e.data for e in await store.events("web:a") if e.type == "visit_result"]
    assert result == [{"answered": True, "solved": False}]


@pytest.mark.parametrize(("answer", "solved"), [("还是没解决啊", False), ("解决了，谢谢", True), ("not fixed yet", False)])
async def test_the_visit_is_answered_in_the_customers_words(engine: ConversationEngine, clock: FakeClock,
                                                            store: SqliteStore, answer: str, solved: bool) -> None:
    """Only the buttons' exact words counted: "还是没解决啊" got the fallback and the complaint was not reopened."""
    agent = await create_agent(store, "wang", "password-1")
    await say(engine, clock, "我要投诉，快递太慢了")
    await engine.desk.claim("web:a", agent)
    await engine.desk.close("web:a", agent, resolved=True, category="logistics")
    clock.advance(days=3)
    await engine.followups.run_due()
    await say(engine, clock, answer)
    result = [e.data for e in await store.events("web:a") if e.type == "visit_result"]
    assert result == [{"answered": True, "solved": solved}]


async def test_unanswered_visit_is_recorded(engine: ConversationEngine, clock: FakeClock,
                                            store: SqliteStore) -> None:
    await engine.followups.schedule("complaint_visit", "web:a", clock.now())
    await store.append("web:a", [])
    await engine.followups.run_due()
    clock.advance(days=2, minutes=1)
    await engine.followups.run_due()
    result = [e.data for e in await store.events("web:a") if e.type == "visit_result"]
    assert result == [{"answered": False, "solved": None}]


async def test_nudge_then_idle_close_and_writing_cancels_it(engine: ConversationEngine, clock: FakeClock,
                                                            store: SqliteStore, outbox: FlakyOutbox) -> None:
    await say(engine, clock, "我要退货")  # the bot now waits for an order number
    clock.advance(minutes=5)
    await engine.followups.run_due()
    assert "请问您还在吗" in outbox.texts()[-1]
    clock.advance(minutes=10)
    await engine.followups.run_due()
    assert "会话先为您结束" in outbox.texts()[-1]
    assert (await engine.state("web", "a")).status == "closed"
    # No survey after an idle close.
    clock.advance(hours=1)
    assert await engine.followups.run_due() == 0
    # A customer who answers in time is not nudged.
    await say(engine, clock, "我要退货", customer="b")
    clock.advance(minutes=3)
    await say(engine, clock, "E20261118001234", customer="b")
    clock.advance(minutes=3)
    sent_before = len(outbox.sent)
    await engine.followups.run_due()
    assert len(outbox.sent) == sent_before


async def test_the_nudge_a_turn_starts_is_stored_and_logged_in_the_turns_own_write(
        engine: ConversationEngine, clock: FakeClock, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever reads the turn next (another worker, the customer's next message) finds the job to cancel."""
    appends: list[tuple[list[str], int]] = []
    original = store.append

    async def counting(conversation_id: str, events: list[Event], **kw: object) -> list[Event]:
        stored = await original(conversation_id, events, **kw)  # type: ignore[arg-type]
        appends.append(([e.type for e in events], len(await store.jobs(status="pending"))))
        return stored

    monkeypatch.setattr(store, "append", counting)
    await say(engine, clock, "我要退货")  # the bot now waits for an order number
    assert appends == [(["customer_message", "flow", "bot_reply", "followup_scheduled"], 1)]
    [job] = await store.jobs(status="pending")
    scheduled = [e.data for e in await store.events("web:a") if e.type == "followup_scheduled"]
    assert scheduled == [{"job_id": job["id"], "kind": "nudge", "due": job["due"]}]
    assert (await engine.state("web", "a")).followups == ((job["id"], "nudge"),)


async def test_quiet_hours_move_a_job_to_the_morning(settings: Settings, store: SqliteStore,
                                                     outbox: FlakyOutbox) -> None:
    evening = FakeClock(datetime(2026, 11, 24, 20, 55, tzinfo=SHANGHAI))
    engine = make(settings, store, evening, outbox)
    await say(engine, evening, "再见")
    [job] = await store.jobs(status="pending")
    assert datetime.fromisoformat(job["due"]) == datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI)
    evening.advance(hours=2)
    assert await engine.followups.run_due() == 0
    evening.advance(hours=10, minutes=6)
    assert await engine.followups.run_due() == 1
    f = engine.followups
    assert f.allowed_time(datetime(2026, 11, 25, 3, 0, tzinfo=SHANGHAI)) == datetime(2026, 11, 25, 9, 0,
                                                                                       tzinfo=SHANGHAI)
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=SHANGHAI)
    assert f.allowed_time(noon) == noon


async def test_a_nudge_due_in_quiet_hours_is_dropped_not_sent_the_next_morning(
        settings: Settings, store: SqliteStore, outbox: FlakyOutbox) -> None:
    evening = FakeClock(datetime(2026, 11, 24, 20, 58, tzinfo=SHANGHAI))
    engine = make(settings, store, evening, outbox)
    await say(engine, evening, "我要退货")  # the bot now waits for an order number
    [job] = await store.jobs(status="pending")
    assert datetime.fromisoformat(job["due"]) == datetime(2026, 11, 24, 21, 3, tzinfo=SHANGHAI)
    evening.advance(minutes=5)
    assert await engine.followups.run_due() == 0
    evening.advance(hours=13)
    assert await engine.followups.run_due() == 0
    assert outbox.sent == []
    skipped = [e.data for e in await store.events("web:a") if e.type == "followup_skipped"]
    assert [(s["kind"], s["reason"]) for s in skipped] == [("nudge", "quiet_hours")]
    assert "哪件**商品**" in await say(engine, evening, "E20261118001234")  # the flow goes on where it was


async def test_a_wechat_complaint_visit_comes_while_wechat_still_lets_the_shop_write(
        settings: Settings, store: SqliteStore, clock: FakeClock, outbox: FlakyOutbox) -> None:
    """Three days after the close is past WeChat's 48 hours: the visit was always skipped there."""
    engine = make(settings, store, clock, outbox, channel="wechat")
    agent = await create_agent(store, "wang", "password-1")
    await say(engine, clock, "我要投诉，快递太慢了", customer="o-1", channel="wechat")
    last_message = clock.now()
    await engine.desk.claim("wechat:o-1", agent)
    await engine.desk.close("wechat:o-1", agent, resolved=True, category="logistics")
    [visit] = await store.jobs(status="pending")
    due = datetime.fromisoformat(visit["due"])
    assert visit["kind"] == "complaint_visit" and due < last_message + timedelta(hours=48)
    assert engine.followups.allowed_time(due) == due  # not in quiet hours
    clock.advance(seconds=(due - clock.now()).total_seconds())
    assert await engine.followups.run_due() == 1
    assert any("回访" in t for t in outbox.texts())


async def test_failed_sends_retry_with_backoff_then_give_up(settings: Settings, store: SqliteStore,
                                                            clock: FakeClock) -> None:
    outbox = FlakyOutbox(failures=2)
    engine = make(settings, store, clock, outbox)
    job = await engine.followups.schedule("ticket_update", "web:a", clock.now(),
                                          data={"ticket_id": "RT1", "status": "approved"})
    assert await engine.followups.run_due() == 0
    stored = await store.job_get(job["id"])
    assert stored is not None and stored["attempts"] == 1 and stored["status"] == "pending"
    clock.advance(minutes=2)
    await engine.followups.run_due()
    clock.advance(minutes=4)
    assert await engine.followups.run_due() == 1
    assert "RT1" in outbox.texts()[-1] and "审核通过" in outbox.texts()[-1]
    bot_replies = [e for e in await store.events("web:a") if e.type == "bot_reply"]
    assert len(bot_replies) == 1  # logged once, not once per try
    always_down = FlakyOutbox(failures=100)
    engine2 = make(settings, store, clock, always_down)
    job2 = await engine2.followups.schedule("ticket_update", "web:b", clock.now(),
                                            data={"ticket_id": "RT2", "status": "approved"})
    for _ in range(6):
        await engine2.followups.run_due()
        clock.advance(minutes=20)
    assert (await store.job_get(job2["id"]))["status"] == "failed"  # type: ignore[index]
    assert any(e.type == "followup_failed" for e in await store.events("web:b"))


async def test_wechat_48_hour_window(settings: Settings, store: SqliteStore, clock: FakeClock,
                                     outbox: FlakyOutbox) -> None:
    engine = make(settings, store, clock, outbox, channel="wechat")
    await say(engine, clock, "再见", customer="openid-1", channel="wechat")
    await engine.followups.schedule("complaint_visit", "wechat:openid-1", clock.now() + timedelta(days=3))
    clock.advance(minutes=11)
    assert await engine.followups.run_due() == 1  # the survey, within 48 h
    clock.advance(days=3)
    await engine.followups.run_due()
    assert len(outbox.sent) == 1
    skipped = [e.data for e in await store.events("wechat:openid-1") if e.type == "followup_skipped"]
    assert skipped and skipped[0]["reason"] == "outside_48h_window"


async def test_restart_rearms_pending_and_marks_old_ones_missed(settings: Settings, clock: FakeClock,
                                                                 tmp_path: Path, outbox: FlakyOutbox) -> None:
    store = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    engine = make(settings, store, clock, outbox)
    await say(engine, clock, "再见", customer="soon")
    await engine.followups.schedule("ticket_update", "web:late", clock.now() + timedelta(minutes=1),
                                    data={"ticket_id": "RT9", "status": "resolved"})
    await store.close()
    # Down for 30 minutes: the survey (due at +10 min) and the ticket update are late but within the grace.
    clock.advance(minutes=30)
    store2 = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    engine2 = make(settings, store2, clock, outbox)
    assert await engine2.followups.run_due(startup=True) == 2
    await engine2.followups.schedule("ticket_update", "web:old", clock.now(),
                                     data={"ticket_id": "RT8", "status": "resolved"})
    clock.advance(hours=3)
    assert await engine2.followups.run_due(startup=True) == 0
    assert [j["kind"] for j in await store2.jobs(status="missed")] == ["ticket_update"]
    await store2.close()


async def test_one_job_claimed_once_by_racing_runners(engine: ConversationEngine, clock: FakeClock,
                                                      outbox: FlakyOutbox) -> None:
    job = await engine.followups.schedule("ticket_update", "web:a", clock.now(),
                                          data={"ticket_id": "RT1", "status": "approved"})
    results = await asyncio.gather(*(engine.followups.run_job(job["id"]) for _ in range(5)))
    assert results.count(True) == 1 and len(outbox.sent) == 1


async def test_waiting_too_long_updates_the_customer_and_alerts_once(
    engine: ConversationEngine, clock: FakeClock, store: SqliteStore, outbox: FlakyOutbox
) -> None:
    sub = store.subscribe()
    await say(engine, clock, "转人工")
    clock.advance(minutes=4)
    assert await engine.followups.check_waits() == 0
    clock.advance(minutes=2)
    assert await engine.followups.check_waits() == 1
    assert "久等" in outbox.texts()[-1]
    assert await engine.followups.check_waits() == 0
    alerts = []
    while True:
        try:
            topic, payload = await asyncio.wait_for(anext(aiter(sub)), 0.5)
        except TimeoutError:
            break
        if payload.get("kind") == "alert":
            alerts.append(payload)
    assert [a["alert"] for a in alerts] == ["wait_exceeded"]
    sub.close()


async def test_overdue_ticket_raises_an_alert_once(engine: ConversationEngine, clock: FakeClock,
                                                   store: SqliteStore) -> None:
    for text in ("我要退货", "E20261118001234", "扫地机器人", "不想要了", "13812345678", "确认"):
        await say(engine, clock, text)
    clock.advance(hours=23)
    assert await engine.followups.check_tickets() == 0
    clock.advance(hours=2)
    assert await engine.followups.check_tickets() == 1
    assert await engine.followups.check_tickets() == 0


async def test_scheduler_declares_timers_on_the_shop_clock(engine: ConversationEngine, clock: FakeClock) -> None:
    scheduler = JobScheduler(engine.followups, SHANGHAI, sweep_seconds=30)
    due = datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI)
    scheduler.start(paused=True)
    try:
        scheduler.arm(due)
        scheduler.arm(due + timedelta(hours=1))  # later: the timer keeps waking at the earliest
        assert dict(scheduler.jobs())["wake"] == due
        scheduler.arm(due - timedelta(minutes=5))
        jobs = dict(scheduler.jobs())
        assert jobs["wake"] == due - timedelta(minutes=5)
        assert "sweep" in jobs
    finally:
        scheduler.shutdown()


async def test_retention_purges_only_old_closed_conversations(engine: ConversationEngine, clock: FakeClock,
                                                              store: SqliteStore) -> None:
    from bot.retention import purge_closed

    await say(engine, clock, "再见", customer="old-closed")
    await say(engine, clock, "我要退货", customer="old-open")
    clock.advance(days=400)
    await say(engine, clock, "再见", customer="new-closed")
    assert await purge_closed(store, clock.now(), 365) == 1
    assert set(await store.conversations()) == {"web:old-open", "web:new-closed"}


def test_daily_purge_fires_at_four_in_the_morning(engine: ConversationEngine) -> None:
    async def purge() -> int:
        return 0

    scheduler = JobScheduler(engine.followups, SHANGHAI, sweep_seconds=30, daily=purge)
    fixed_now = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)
    assert scheduler.next_fire("daily", fixed_now) == datetime(2026, 11, 25, 4, 0, tzinfo=SHANGHAI)
    assert scheduler.next_fire("sweep", fixed_now) is not None


@given(st.text(max_size=200))
def test_a_rating_is_one_to_five_or_none(text: str) -> None:
    from bot.followups import parse_rating

    assert parse_rating(text) in (None, 1, 2, 3, 4, 5)
