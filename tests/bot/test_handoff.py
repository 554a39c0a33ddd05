"""Handoff through the engine and the desk: queue order, positions, claim races, agent actions."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from bot.assemble import build_engine
from bot.auth import Agent, create_agent
from bot.config import Settings
from bot.delivery import Delivery
from bot.engine import ConversationEngine
from bot.handoff import HandoffError
from bot.knowledge import KnowledgeBase
from bot.models import IncomingMessage, Reply
from bot.storage.sqlite import SqliteStore
from tests.conftest import SHANGHAI
from tests.fakes import FakeClock
from tests.small_kb import ENTRIES, SYNONYMS


class CollectingOutbox:
    """Records what would be pushed to each customer."""

    def __init__(self) -> None:
        self.sent: dict[str, list[Reply]] = {}

    async def deliver(self, customer_id: str, replies: list[Reply]) -> bool:  # type: ignore[override]
        self.sent.setdefault(customer_id, []).extend(replies)
        return True

    def texts(self, customer: str) -> list[str]:
        return [r.text for r in self.sent.get(customer, []) if r.kind == "text"]


@pytest.fixture
def outbox() -> CollectingOutbox:
    return CollectingOutbox()


@pytest.fixture
def engine(settings: Settings, store: SqliteStore, clock: FakeClock, outbox: CollectingOutbox) -> ConversationEngine:
    return build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS),
                        delivery=Delivery({"web": outbox}))


@pytest.fixture
async def agents(store: SqliteStore) -> tuple[Agent, Agent]:
    a = await create_agent(store, "wang", "password-1", display_name="小王")
    b = await create_agent(store, "li", "password-2", display_name="小李", max_concurrent=1)
    return a, b


async def say(engine: ConversationEngine, clock: FakeClock, customer: str, text: str) -> str:
    replies = await engine.handle(IncomingMessage("web", customer, text, clock.now()))
    return "\n".join(r.text for r in replies)


async def test_asking_for_a_person_queues_with_position_and_wait(engine: ConversationEngine, clock: FakeClock,
                                                                store: SqliteStore) -> None:
    first = await say(engine, clock, "a", "转人工")
    assert "第 **1** 位" in first and "分钟" in first
    clock.advance(seconds=10)
    second = await say(engine, clock, "b", "我要找人工客服")
    assert "第 **2** 位" in second
    assert [c for c, _ in await store.queue_items()] == ["web:a", "web:b"]
    assert (await engine.state("web", "a")).status == "queued"


async def test_major_complaint_jumps_the_queue(engine: ConversationEngine, clock: FakeClock,
                                              store: SqliteStore) -> None:
    await say(engine, clock, "a", "转人工")
    clock.advance(seconds=5)
    text = await say(engine, clock, "b", "空调漏电了，孩子被电到了！")
    assert "最高优先级" in text and "第 **1** 位" in text
    assert [c for c, _ in await store.queue_items()] == ["web:b", "web:a"]


async def test_vip_goes_before_normal(settings: Settings, store: SqliteStore, clock: FakeClock) -> None:
    vip = replace(settings, handoff=replace(settings.handoff, vip_customers=("vip-1",)))
    engine = build_engine(vip, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await say(engine, clock, "a", "转人工")
    clock.advance(seconds=5)
    await say(engine, clock, "vip-1", "转人工")
    assert [c for c, _ in await store.queue_items()] == ["web:vip-1", "web:a"]


async def test_while_queued_the_bot_is_quiet_and_cancel_returns_to_it(engine: ConversationEngine,
                                                                      clock: FakeClock, store: SqliteStore) -> None:
    await say(engine, clock, "a", "转人工")
    # Acknowledged once per wait (silence reads as being ignored), then kept quietly for the agent; asking how
    # long it still takes gets the place in the queue each time.
    assert "已收到您的消息" in await say(engine, clock, "a", "在吗")
    assert await say(engine, clock, "a", "可以开发票吗") == ""
    events = await store.events("web:a")
    assert events[-1].type == "customer_message" and events[-1].data["text"] == "可以开发票吗"
    assert "排在第 **1** 位" in await say(engine, clock, "a", "还要等多久啊")
    assert "排在第 **1** 位" in await say(engine, clock, "a", "人呢？？")
    assert "已为您取消人工服务" in await say(engine, clock, "a", "取消")
    assert await store.queue_items() == []
    assert "申请发票" in await say(engine, clock, "a", "可以开发票吗")


async def test_claim_reply_release_round_trip(engine: ConversationEngine, clock: FakeClock, store: SqliteStore,
                                             outbox: CollectingOutbox, agents: tuple[Agent, Agent]) -> None:
    wang, _ = agents
    await say(engine, clock, "a", "转人工")
    await say(engine, clock, "a", "我的订单E20261118001234一直没到")
    queue = await engine.desk.queue()
    assert queue[0]["conversation_id"] == "web:a" and queue[0]["preview"].startswith("我的订单")
    await engine.desk.claim("web:a", wang)
    assert "客服**小王**" in outbox.texts("a")[0]
    assert (await engine.state("web", "a")).status == "agent"
    # Customer messages now go to the agent only.
    assert await say(engine, clock, "a", "请问什么时候到") == ""
    warnings = await engine.desk.reply("web:a", wang, "您好，您的包裹明天送达，请您留意电话。")
    assert warnings == []
    assert outbox.texts("a")[-1] == "您好，您的包裹明天送达，请您留意电话。"
    assert [r.sender for r in outbox.sent["a"]][-1] == "agent"
    warnings = await engine.desk.reply("web:a", wang, "你自己看物流吧")
    assert {w.code for w in warnings} >= {"informal_you", "banned_phrase"}
    await engine.desk.note("web:a", wang, "客户很着急，明天跟进")
    detail = await engine.desk.detail("web:a", wang, notes_private=False)
    assert any(i.get("note") for i in detail["events"])
    assert all("客户很着急" not in t for t in outbox.texts("a"))
    await engine.desk.release("web:a", wang)
    assert "智能助手继续为您服务" in outbox.texts("a")[-1]
    assert "申请发票" in await say(engine, clock, "a", "可以开发票吗")
    # The history after a reload shows the shop's notices as they came live (system lines), not as bot answers.
    history = await engine.transcript("web", "a")
    notices = [h["from"] for h in history if "小王" in h["text"] or "智能助手继续" in h["text"]]
    assert notices == ["system", "system"]


async def test_two_agents_race_for_one_conversation(engine: ConversationEngine, clock: FakeClock,
                                                   agents: tuple[Agent, Agent]) -> None:
    await say(engine, clock, "a", "转人工")
    results = await asyncio.gather(*(engine.desk.claim("web:a", agent) for agent in agents),
                                   return_exceptions=True)
    assert sum(r is None for r in results) == 1
    [error] = [r for r in results if isinstance(r, HandoffError)]
    assert error.code == "already_claimed"


async def test_limit_transfer_close_and_positions_move(engine: ConversationEngine, clock: FakeClock,
                                                      outbox: CollectingOutbox, store: SqliteStore,
                                                      agents: tuple[Agent, Agent]) -> None:
    wang, li = agents
    for c in ("a", "b", "c"):
        await say(engine, clock, c, "转人工")
        clock.advance(seconds=1)
    await engine.desk.claim("web:a", li)
    with pytest.raises(HandoffError, match="limit_reached"):
        await engine.desk.claim("web:b", li)
    # b and c were told their new places when a was taken.
    assert any("第 **1** 位" in r.text for r in outbox.sent["b"] if r.kind == "notice")
    assert any("第 **2** 位" in r.text for r in outbox.sent["c"] if r.kind == "notice")
    await engine.desk.claim("web:b", wang)
    with pytest.raises(HandoffError, match="limit_reached"):
        await engine.desk.transfer("web:b", wang, "li")
    with pytest.raises(HandoffError, match="not_your_conversation"):
        await engine.desk.reply("web:a", wang, "您好")
    await engine.desk.close("web:a", li, resolved=True, category="logistics")
    await engine.desk.transfer("web:b", wang, "li")
    assert (await engine.state("web", "b")).agent == "li"
    closed = [e for e in await store.events("web:a") if e.type == "closed"]
    assert closed[0].data["resolved"] is True and closed[0].data["category"] == "logistics"
    assert "祝您生活愉快" in outbox.texts("a")[-1]
    # After closing, the customer starts a fresh conversation with the bot.
    assert "欢迎光临" in await say(engine, clock, "a", "可以开发票吗")


async def test_notes_can_be_private(engine: ConversationEngine, clock: FakeClock,
                                   agents: tuple[Agent, Agent]) -> None:
    wang, li = agents
    await say(engine, clock, "a", "转人工")
    await engine.desk.claim("web:a", wang)
    await engine.desk.note("web:a", wang, "私人备注")
    hidden = await engine.desk.detail("web:a", li, notes_private=True)
    assert not any(i.get("note") for i in hidden["events"])
    shown = await engine.desk.detail("web:a", li, notes_private=False)
    assert any(i.get("note") for i in shown["events"])


async def test_handoff_survives_a_restart(settings: Settings, clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    engine = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await say(engine, clock, "a", "转人工")
    agent = await create_agent(store, "wang", "password-1")
    await store.close()
    store2 = SqliteStore(path, clock)
    engine2 = build_engine(settings, store2, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    assert [c for c, _ in await store2.queue_items()] == ["web:a"]
    assert "已收到您的消息" in await say(engine2, clock, "a", "还在吗")
    assert await say(engine2, clock, "a", "好的") == ""
    await engine2.desk.claim("web:a", agent)
    assert (await engine2.state("web", "a")).status == "agent"
    await store2.close()


async def test_outside_business_hours_a_message_is_left(settings: Settings, store: SqliteStore,
                                                       outbox: CollectingOutbox) -> None:
    night = FakeClock(datetime(2026, 11, 24, 23, 30, tzinfo=SHANGHAI))
    engine = build_engine(settings, store, night, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    ask = await say(engine, night, "a", "转人工")
    assert "非工作时间" in ask and "09:00-21:00" in ask
    assert "不完整" in await say(engine, night, "a", "明天再说")
    assert "描述" in await say(engine, night, "a", "13912345678")
    done = await say(engine, night, "a", "空调不制冷，想约维修")
    assert "24小时内" in done
    [ticket] = await store.tickets(conversation_id="web:a")
    assert (ticket["kind"], ticket["contact"], ticket["message"]) == ("leave_message", "13912345678",
                                                                      "空调不制冷，想约维修")
    await say(engine, night, "b", "转人工")  # b only starts leaving a message
    assert [c for c, _ in await store.queue_items()] == ["web:a"]
    assert (await engine.state("web", "a")).priority == "callback"


async def test_a_message_left_at_night_keeps_the_problem_written_first_and_needs_no_contact(
        settings: Settings, store: SqliteStore) -> None:
    """The contact step refused everything that was not a mainland mobile: a problem written there was lost, and
    a customer who would not leave a number could never leave the message."""
    night = FakeClock(datetime(2026, 11, 24, 23, 30, tzinfo=SHANGHAI))
    engine = build_engine(settings, store, night, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await say(engine, night, "a", "转人工")
    assert "服务时间是 **09:00-21:00**" in await say(engine, night, "a", "人工")  # not "that contact looks incomplete"
    noted = await say(engine, night, "a", "我的冰箱不制冷了，什么时候能来修")
    assert "已记下您的问题" in noted and "不完整" not in noted
    assert "留言编号" in await say(engine, night, "a", "13912345678")  # the problem was kept: not asked again
    await say(engine, night, "b", "转人工")
    assert "描述" in await say(engine, night, "b", "我不想留电话，你们直接在这里回复我")
    assert "描述" in await say(engine, night, "b", "还要等多久")  # a question about the wait is not the message
    done = await say(engine, night, "b", "洗衣机漏水")
    assert "在这里回复您" in done
    await say(engine, night, "c", "轉人工")
    await say(engine, night, "c", "0912-345-678")  # a Taiwan mobile, as it is written
    await say(engine, night, "c", "床墊什麼時候到")
    await say(engine, night, "d", "转人工")
    assert "留言编号" in await say(engine, night, "d", "13812345678 冰箱不制冷了，麻烦明天联系我")  # both at once
    tickets = {t["conversation_id"]: t for t in await store.tickets()}
    assert (tickets["web:a"]["contact"], tickets["web:a"]["message"]) == ("13912345678", "我的冰箱不制冷了，什么时候能来修")
    assert (tickets["web:b"]["contact"], tickets["web:b"]["message"]) == (None, "洗衣机漏水")
    assert tickets["web:c"]["contact"] == "0912345678"
    assert (tickets["web:d"]["contact"], tickets["web:d"]["message"]) == ("13812345678", "13812345678 冰箱不制冷了，麻烦明天联系我")


async def test_a_safety_incident_while_waiting_or_leaving_a_message_is_not_left_unheard(
        settings: Settings, store: SqliteStore, clock: FakeClock) -> None:
    """While queued or leaving a message at night, the rules were not read: a fire got no reply at all."""
    engine = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await say(engine, clock, "a", "转人工")
    await say(engine, clock, "b", "转人工")
    fire = await say(engine, clock, "b", "热水器冒烟了，着火了！")
    assert "注意人身和用电安全" in fire and "最高优先级" in fire
    assert [c for c, _ in await store.queue_items()] == ["web:b", "web:a"]  # b now goes first
    assert (await engine.state("web", "b")).priority == "major"
    night = FakeClock(datetime(2026, 11, 24, 23, 30, tzinfo=SHANGHAI))
    by_night = build_engine(settings, store, night, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await say(by_night, night, "c", "转人工")
    shock = await say(by_night, night, "c", "热水器漏电了，孩子被电到了")
    assert "119" in shock
    await say(by_night, night, "c", "13912345678")
    assert (await by_night.state("web", "c")).priority == "major"
    [ticket] = await store.tickets(conversation_id="web:c")
    assert ticket["message"] == "热水器漏电了，孩子被电到了"


async def test_repeated_fallbacks_hand_over(engine: ConversationEngine, clock: FakeClock,
                                           store: SqliteStore) -> None:
    await say(engine, clock, "a", "火星上的天气怎么样，会下雨吗")
    second = await say(engine, clock, "a", "量子计算机的原理是什么")
    assert "已为您转接人工客服" in second
    assert [c for c, _ in await store.queue_items()] == ["web:a"]


async def test_an_angry_customers_giving_up_does_not_take_the_request_back(engine: ConversationEngine,
                                                                           clock: FakeClock) -> None:
    """"算了" after a complaint or in anger is giving up: it cancelled the request, and a survey followed."""
    await say(engine, clock, "a", "气死我了，冰箱送来就是坏的")
    assert (await engine.state("web", "a")).status == "queued"
    assert "回复“**取消**”" in await say(engine, clock, "a", "算了")
    assert (await engine.state("web", "a")).status == "queued"
    assert "已为您取消" in await say(engine, clock, "a", "取消")
    await say(engine, clock, "b", "转人工")  # a calm request is taken back by 算了 as before
    assert "已为您取消" in await say(engine, clock, "b", "算了")
