"""The engine as the customer sees it: what is replied, what is logged, what survives a restart."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.assemble import build_engine
from bot.config import Settings
from bot import engine as engine_module
from bot.engine import ConversationEngine
from bot.knowledge import KnowledgeBase
from bot.models import IncomingMessage
from bot.normalize import to_simplified
from bot.storage.sqlite import SqliteStore
from tests.fakes import FakeClock
from tests.small_kb import ENTRIES, SYNONYMS



@pytest.fixture
def small(settings: Settings, store: SqliteStore, clock: FakeClock) -> ConversationEngine:
    return build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))


def msg(clock: FakeClock, text: str, *, customer: str = "c1", mid: str | None = None, kind: str = "text",
        channel: str = "web") -> IncomingMessage:
    return IncomingMessage(channel, customer, text, clock.now(), kind=kind, channel_msg_id=mid)


async def ask(engine: ConversationEngine, clock: FakeClock, text: str, **kw: object) -> str:
    replies = await engine.handle(msg(clock, text, **kw))  # type: ignore[arg-type]
    assert replies, f"no reply to {text!r}"
    return "\n".join(r.text for r in replies)


async def test_first_reply_opens_with_the_shop_name_then_answers(small: ConversationEngine, clock: FakeClock,
                                                                 settings: Settings) -> None:
    text = await ask(small, clock, "七天无理由退货怎么申请？")
    assert settings.shop.name in text.splitlines()[0]
    assert "签收后7天内无理由退货" in text
    assert text.rstrip().endswith("请问还有什么可以帮您的吗？")
    second = await ask(small, clock, "可以开发票吗")
    assert settings.shop.name not in second
    assert "申请发票" in second


async def test_greeting_uses_the_model_opening_line(small: ConversationEngine, clock: FakeClock) -> None:
    text = await ask(small, clock, "你好")
    assert text == "您好，家居电器旗舰店，请问有什么可以帮您？"


async def test_a_particle_or_a_laugh_is_asked_to_rephrase_and_never_ends_the_conversation(
        small: ConversationEngine, clock: FakeClock) -> None:
    """哦 or 哈哈 once read as "only goodbye words" (there were none, and fillers left nothing else): the
    conversation was closed and a survey scheduled."""
    await ask(small, clock, "七天无理由退货怎么申请？")
    for text in ("哦", "哈哈", "oh"):
        assert "换一种说法" in await ask(small, clock, text)
        assert (await small.state("web", "c1")).status == "bot"
    assert await ask(small, clock, "亲") == "您好，家居电器旗舰店，请问有什么可以帮您？"  # 亲 alone greets
    assert "感谢您的咨询" in await ask(small, clock, "再见")
    assert (await small.state("web", "c1")).status == "closed"


async def test_a_greeting_in_front_of_a_question_does_not_change_the_match(
        small: ConversationEngine, clock: FakeClock, store: SqliteStore) -> None:
    """你好 or hi weighed in the match as much as the question's own words: a third fewer answers."""
    asked = {"bare": "七天无理由退货怎么申请", "polite": "亲，在吗？请问七天无理由退货怎么申请",
             "en-bare": "how do I return an item", "en-polite": "Hi there! how do I return an item"}
    candidates = {}
    for customer, text in asked.items():
        await ask(small, clock, text, customer=customer)
        events = await store.events(f"web:{customer}")
        candidates[customer] = [e.data["candidates"] for e in events if e.type == "bot_reply"]
        # The customer's words are kept as written; only the match leaves the greeting out.
        assert [e.data["text"] for e in events if e.type == "customer_message"] == [text]
    assert candidates["polite"] == candidates["bare"] and candidates["bare"][0]
    assert candidates["en-polite"] == candidates["en-bare"] and candidates["en-bare"][0]


async def test_every_zh_reply_says_nin_never_ni(small: ConversationEngine, clock: FakeClock) -> None:
    for text in ("你好", "七天无理由退货怎么申请", "你们的量子力学课程怎么报名", "谢谢", "再见", "🙂🙂", " ", "我要人工"):
        reply = await ask(small, clock, text)
        assert "你" not in reply, (text, reply)


async def test_traditional_question_gets_a_traditional_answer(small: ConversationEngine, clock: FakeClock) -> None:
    text = await ask(small, clock, "退貨運費誰承擔？")
    assert "運費" in text and "运费" not in text
    assert "質量問題" in text


async def test_one_latin_word_in_a_chinese_conversation_keeps_chinese(small: ConversationEngine,
                                                                     clock: FakeClock) -> None:
    await ask(small, clock, "七天无理由退货怎么申请？")
    for text in ("ok", "thx!", "iPhone"):
        replies = await small.handle(msg(clock, text))
        assert all(r.lang == "zh" for r in replies), (text, replies)
    english = await small.handle(msg(clock, "how long does delivery take"))
    assert english and english[-1].lang == "en"


async def test_english_question_gets_an_english_answer(small: ConversationEngine, clock: FakeClock) -> None:
    text = await ask(small, clock, "how can I return an item?")
    assert "welcome to **Home & Living Store**" in text
    assert "within **7 days**" in text
    assert "您" not in text


async def test_unknown_question_falls_back_politely_then_offers_a_person(
    settings: Settings, store: SqliteStore, clock: FakeClock
) -> None:
    offer_only = replace(settings, handoff=replace(settings.handoff, triggers=("customer_asked",)))
    engine = build_engine(offer_only, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    first = await ask(engine, clock, "火星上的天气怎么样，会下雨吗")
    assert "马上为您查询核实" in first and "人工" not in first
    second = await ask(engine, clock, "量子计算机的原理是什么")
    assert "回复“**人工**”" in second


@pytest.fixture
def unsure(settings: Settings, store: SqliteStore, clock: FakeClock) -> ConversationEngine:
    """An engine that never answers outright, so every match above the clarify threshold clarifies."""
    strict = replace(settings, matcher=replace(settings.matcher, answer_threshold=1.0, clarify_threshold=0.05))
    return build_engine(strict, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))


async def test_clarify_offers_numbered_choices_and_a_number_picks_one(unsure: ConversationEngine,
                                                                      clock: FakeClock) -> None:
    reply = (await unsure.handle(msg(clock, "退货运费")))[0]
    assert "1. " in reply.text and len(reply.suggestions) >= 2
    assert reply.suggestions[0].label in reply.text
    second = next(e for e in ENTRIES if e.question == reply.suggestions[1].value)
    text = await ask(unsure, clock, "第2个")
    assert second.answer.replace("**", "") in text.replace("**", "")


@pytest.mark.parametrize("pick", ["第二个", "2号吧", "选2", "the second one", "2nd", "number 2 please", "２", "第二個"])
async def test_a_pick_in_the_customers_own_words(unsure: ConversationEngine, clock: FakeClock, pick: str) -> None:
    """Only a bare digit or 第2个 picked: 第二个 or "the second one" got the fallback."""
    reply = (await unsure.handle(msg(clock, "退货运费")))[0]
    second = next(e for e in ENTRIES if e.question == reply.suggestions[1].value)
    text = to_simplified(await ask(unsure, clock, pick))  # 第二個 is answered in traditional characters
    assert second.answer.replace("**", "") in text.replace("**", "")


async def test_none_of_these_twice_in_a_row_goes_to_a_person(unsure: ConversationEngine, clock: FakeClock) -> None:
    """The first decline used to clear the choices, so the second got the fallback and never counted."""
    await unsure.handle(msg(clock, "退货运费"))
    assert "换个说法" in await ask(unsure, clock, "都不是")
    assert "转接" in await ask(unsure, clock, "都不对")
    assert (await unsure.state("web", "c1")).status == "queued"


async def test_clarify_pick_by_words_and_declines(unsure: ConversationEngine, clock: FakeClock,
                                                 store: SqliteStore) -> None:
    reply = (await unsure.handle(msg(clock, "退货运费")))[0]
    first = next(e for e in ENTRIES if e.question == reply.suggestions[0].value)
    text = await ask(unsure, clock, reply.suggestions[0].value)
    assert first.answer.replace("**", "") in text.replace("**", "")
    # Another customer (right after an answer, "退货运费" again would be read with the question before it).
    await unsure.handle(msg(clock, "退货运费", customer="c2"))
    assert "换个说法" in await ask(unsure, clock, "都不是", customer="c2")
    await unsure.handle(msg(clock, "退货运费", customer="c2"))
    assert "人工" in await ask(unsure, clock, "都不是", customer="c2")
    reasons = [e.data.get("reason") for e in await store.events("web:c2") if e.type == "handoff_requested"]
    assert reasons == ["clarify_declined"]


async def test_at_night_a_safety_incident_is_told_what_to_do_now_and_when_the_shop_calls(
        settings: Settings, store: SqliteStore) -> None:
    """"Someone will contact you immediately" was followed by "we will contact you after we open"."""
    from datetime import datetime

    from tests.conftest import SHANGHAI

    night = FakeClock(datetime(2026, 11, 24, 23, 0, tzinfo=SHANGHAI))
    engine = build_engine(settings, store, night, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    text = await ask(engine, night, "热水器漏电了，我手被电到了")
    assert "119" in text and "立即联系您" not in text and "上班后" in text
    day = FakeClock(datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI))
    by_day = build_engine(settings, store, day, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    assert "立即联系您" in await ask(by_day, day, "热水器漏电了，我手被电到了", customer="day")


async def test_asking_for_a_person_is_recorded(small: ConversationEngine, clock: FakeClock,
                                              store: SqliteStore) -> None:
    text = await ask(small, clock, "转人工")
    assert "人工客服" in text
    types = [e.type for e in await store.events("web:c1")]
    assert "handoff_requested" in types


async def test_major_complaint_is_escalated_with_top_priority(small: ConversationEngine, clock: FakeClock,
                                                             store: SqliteStore) -> None:
    text = await ask(small, clock, "你们卖的电暖器插上就冒烟了，差点起火！")
    assert "最高优先级" in text and "注意人身和用电安全" in text
    events = await store.events("web:c1")
    complaint = next(e for e in events if e.type == "complaint")
    assert complaint.data["severity"] == "major"
    assert complaint.data["category"] == "product_quality"
    handoff = next(e for e in events if e.type == "handoff_requested")
    assert handoff.data["priority"] == "major"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("我要投诉，快递太慢了一个星期还没到", "logistics"),
        ("投诉你们客服态度太差", "service_attitude"),
        ("质量太差了，我要投诉", "product_quality"),
        ("I want to complain, my refund never came", "after_sales"),
    ],
)
async def test_general_complaints_are_classified(small: ConversationEngine, clock: FakeClock,
                                                store: SqliteStore, text: str, category: str) -> None:
    reply = await ask(small, clock, text)
    assert "24" in reply
    complaint = next(e for e in await store.events("web:c1") if e.type == "complaint")
    assert (complaint.data["severity"], complaint.data["category"]) == ("general", category)


async def test_agitated_customer_gets_the_calming_line(small: ConversationEngine, clock: FakeClock) -> None:
    text = await ask(small, clock, "气死我了，到底怎么回事！！！")
    assert "我非常理解您的心情" in text and "请您告诉我具体遇到了什么问题" in text
    assert (await small.state("web", "c1")).status == "queued"


async def test_an_agitated_customer_whose_question_the_faq_answers_is_calmed_then_answered(
        small: ConversationEngine, clock: FakeClock) -> None:
    """The norms: calm first, then steer to the concrete problem; a person is not needed for a known answer."""
    text = await ask(small, clock, "气死了，七天无理由退货怎么申请？")
    assert "我非常理解您的心情" in text and "签收后7天内无理由退货" in text
    assert "请您告诉我具体遇到了什么问题" not in text
    assert (await small.state("web", "c1")).status == "bot"


async def test_order_status_from_the_demo_provider(small: ConversationEngine, clock: FakeClock,
                                                  settings: Settings) -> None:
    import json

    orders = json.loads(settings.path(settings.shop.orders_file).read_text(encoding="utf-8"))["orders"]
    shipped = next(o for o in orders if o["status"] == "shipped")
    text = await ask(small, clock, f"帮我查下订单{shipped['order_no']}到哪了")
    assert shipped["tracking_no"] in text and "已发货" in text
    missing = await ask(small, clock, "订单E20990101000000呢")
    assert "没有查到订单" in missing


async def test_return_flow_collects_validates_confirms_and_stores_a_ticket(
    small: ConversationEngine, clock: FakeClock, store: SqliteStore
) -> None:
    assert "订单号" in await ask(small, clock, "我要退货")
    assert "格式好像不对" in await ask(small, clock, "不记得了")
    assert "哪件**商品**" in await ask(small, clock, "E20261118001234")
    assert "原因" in await ask(small, clock, "扫地机器人")
    contact_prompt = await ask(small, clock, "收到就坏了，质量问题")
    assert "运费由本店承担" in contact_prompt
    assert "不完整" in await ask(small, clock, "123")
    assert "快递上门取件" in await ask(small, clock, "不想留电话")  # why it is needed, not "incomplete"
    confirm = await small.handle(msg(clock, "我的电话是 138-1234-5678"))
    assert "138****5678" in confirm[0].text and "13812345678" not in confirm[0].text
    assert [s.value for s in confirm[0].suggestions] == ["确认", "修改"]
    done = await ask(small, clock, "确认")
    assert "服务单号" in done and "24小时内" in done
    tickets = await store.tickets(conversation_id="web:c1")
    assert len(tickets) == 1
    t = tickets[0]
    assert (t["order_no"], t["product"], t["contact"], t["quality"]) == (
        "E20261118001234", "扫地机器人", "13812345678", True)
    assert t["id"] in done
    # The flow is over: the next question goes to the FAQ again.
    assert "申请发票" in await ask(small, clock, "可以开发票吗")


async def test_the_return_form_lets_the_customer_out_answers_questions_and_checks_the_order(
        small: ConversationEngine, clock: FakeClock, store: SqliteStore) -> None:
    """Everything used to be taken as the next field: 转人工 got "the order number looks wrong" again and again,
    a question became the product, and an order the shop does not have (or a cancelled one) went ahead."""
    await ask(small, clock, "我要退货")
    assert "没有查到订单" in await ask(small, clock, "E20991231000000")
    assert "无需申请退货" in await ask(small, clock, "E20261114007712")  # cancelled
    assert (await small.state("web", "c1")).flow is None
    await ask(small, clock, "我要退货")
    await ask(small, clock, "E20261118001234")
    both = await ask(small, clock, "退货运费谁承担？")
    assert "运费" in both and "哪件**商品**" in both  # answered, then asked again
    assert "原因" in await ask(small, clock, "扫地机器人")
    assert "转接" in await ask(small, clock, "转人工")
    state = await small.state("web", "c1")
    assert state.flow is None and state.status == "queued"
    assert await store.tickets() == []


async def test_return_flow_can_be_cancelled(small: ConversationEngine, clock: FakeClock,
                                           store: SqliteStore) -> None:
    await ask(small, clock, "我想退货")
    assert "已为您取消" in await ask(small, clock, "算了")
    assert await store.tickets() == []


async def test_a_retried_message_is_processed_once(small: ConversationEngine, clock: FakeClock,
                                                  store: SqliteStore) -> None:
    first = await small.handle(msg(clock, "可以开发票吗", mid="m-1"))
    again = await small.handle(msg(clock, "可以开发票吗", mid="m-1"))
    assert again == first
    customer_messages = [e for e in await store.events("web:c1") if e.type == "customer_message"]
    assert len(customer_messages) == 1


async def test_two_customers_never_share_state(small: ConversationEngine, clock: FakeClock) -> None:
    await ask(small, clock, "我要退货", customer="a")
    text = await ask(small, clock, "可以开发票吗", customer="b")
    assert "申请发票" in text


async def test_conversation_survives_a_restart(settings: Settings, clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    engine = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await ask(engine, clock, "我要退货")
    await ask(engine, clock, "E20261118001234")
    await store.close()
    store2 = SqliteStore(path, clock)
    engine2 = build_engine(settings, store2, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    assert "原因" in await ask(engine2, clock, "扫地机器人")
    history = await engine2.transcript("web", "c1")
    assert [h["from"] for h in history] == ["customer", "bot"] * 3
    await store2.close()


class _Interleaving(SqliteStore):
    """A store where another worker's message lands between this worker's read and its write."""

    before_append: Any = None

    async def append(self, conversation_id: str, events: Any, **kw: Any) -> Any:
        hook, self.before_append = self.before_append, None
        if hook is not None:
            await hook()
        return await super().append(conversation_id, events, **kw)


async def test_a_write_by_another_worker_in_between_is_never_skipped(settings: Settings,
                                                                    clock: FakeClock) -> None:
    store = _Interleaving(":memory:", clock)
    worker_a = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    worker_b = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await ask(worker_a, clock, "你好")

    async def customer_asks_b_for_a_person() -> None:
        await ask(worker_b, clock, "转人工", mid="m-b")

    store.before_append = customer_asks_b_for_a_person
    await ask(worker_a, clock, "七天无理由退货怎么申请？", mid="m-a")
    assert (await worker_a.state("web", "c1")).status == (await worker_b.state("web", "c1")).status != "bot"
    await store.close()


async def test_workers_on_a_shared_store_take_turns_on_one_conversation(settings: Settings,
                                                                        clock: FakeClock) -> None:
    store = _Interleaving(":memory:", clock)
    store.shared = True  # as Redis is: the per-conversation lock becomes a lease in the store
    worker_a = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    worker_b = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    second: list[asyncio.Task[Any]] = []

    async def b_gets_a_message_meanwhile() -> None:
        second.append(asyncio.create_task(worker_b.handle(msg(clock, "转人工", mid="m-b"))))
        await asyncio.sleep(0.05)
        assert not second[0].done() and await store.events("web:c1") == [], "B acted while A held the turn"

    store.before_append = b_gets_a_message_meanwhile
    await ask(worker_a, clock, "七天无理由退货怎么申请？", mid="m-a")
    assert await second[0]
    seqs = [(e.seq, e.type) for e in await store.events("web:c1")]
    assert [seq for seq, _ in seqs] == list(range(1, len(seqs) + 1))
    assert seqs[0][1] == "customer_message" and (await worker_b.state("web", "c1")).status != "bot"
    assert await store.cache_get("lease:web:c1") is None
    await store.close()


async def test_needs_agent_entry_answers_and_requests_a_person(small: ConversationEngine, clock: FakeClock,
                                                              store: SqliteStore) -> None:
    text = await ask(small, clock, "电器坏了保修怎么申请")
    assert "三包" in text
    assert any(e.type == "handoff_requested" and e.data["reason"] == "faq_needs_agent"
               for e in await store.events("web:c1"))


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\x00\x01\x02", "🙂🙂🙂", "？？？", "退" * 10_000, "ab\udcffcd", "hello 你好 退货 refund",
     "\u202e\u200b", "<script>alert(1)</script>", "1", "99"],
)
async def test_bad_input_gets_a_polite_reply(small: ConversationEngine, clock: FakeClock, text: str) -> None:
    replies = await small.handle(msg(clock, text))
    assert len(replies) >= 1
    assert all(r.text.strip() for r in replies)


async def test_media_gets_an_acknowledgement(small: ConversationEngine, clock: FakeClock) -> None:
    text = await ask(small, clock, "", kind="image")
    assert "图片" in text


async def test_sample_shop_kb_answers_core_questions(engine: ConversationEngine, clock: FakeClock) -> None:
    for question in ("七天无理由退货怎么申请", "可以开发票吗", "how long does delivery take"):
        replies = await engine.handle(msg(clock, question, customer=question))
        assert replies and replies[0].text


class _Stalling(SqliteStore):
    """A store whose next append waits for a gate: a worker stalled between claiming and storing a message."""

    gate: asyncio.Event | None = None

    async def append(self, conversation_id: str, events: Any, **kw: Any) -> Any:
        if self.gate is not None and any(e.type == "customer_message" for e in events):
            gate, self.gate = self.gate, None
            await gate.wait()
        return await super().append(conversation_id, events, **kw)


async def test_a_retry_on_the_worker_still_running_the_first_delivery_waits_however_long(
        settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "DEDUP_WAIT", 0.1)  # past it, another worker's claim would be taken over
    store = _Stalling(":memory:", clock)
    engine = build_engine(settings, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    gate = store.gate = asyncio.Event()
    first = asyncio.create_task(engine.receive(msg(clock, "七天无理由退货怎么申请？", mid="m-1")))
    retry = asyncio.create_task(engine.receive(msg(clock, "七天无理由退货怎么申请？", mid="m-1")))
    await asyncio.sleep(0.3)
    assert not retry.done()
    gate.set()
    original, repeat = await first, await retry
    assert not original.duplicate and repeat.duplicate
    assert [r.text for r in repeat.replies] == [r.text for r in original.replies] != []
    assert [e.type for e in await store.events("web:c1")].count("customer_message") == 1
    await store.close()


async def test_a_new_question_is_encoded_off_the_event_loop(small: ConversationEngine, clock: FakeClock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The sentence encoder's ~2 ms per new question must not hold up every other conversation."""
    encoder = small.matcher.encoder
    encode_new = encoder._encode_new
    threads: list[int] = []

    def watched(texts: list[str]) -> Any:
        threads.append(threading.get_ident())
        return encode_new(texts)

    monkeypatch.setattr(encoder, "_encode_new", watched)
    question = "发票这个东西到底要在哪里才能申请得到呢"  # asked nowhere else: never encoded in this process
    assert "申请发票" in await ask(small, clock, question)
    assert len(threads) == 1 and threads[0] != threading.get_ident()
    await ask(small, clock, question, customer="c2")
    assert len(threads) == 1  # the second time, neither the model nor a thread


async def test_a_photo_or_menu_click_while_waiting_for_a_person_is_kept_for_them_not_answered(
        small: ConversationEngine, clock: FakeClock, store: SqliteStore) -> None:
    """The bot used to answer a photo with "please describe it in words" over the head of the agent-to-be."""
    await ask(small, clock, "转人工")
    assert (await small.state("web", "c1")).status == "queued"
    [ack] = await small.handle(msg(clock, "", kind="image", mid="p1"))
    assert "已收到您的消息" in ack.text and "文字" not in ack.text  # kept for the agent, acknowledged once
    assert await small.handle(IncomingMessage("web", "c1", "", clock.now(), kind="menu", channel_msg_id="m1",
                                              meta={"faq_id": ENTRIES[0].id})) == []
    kinds = [e.data["kind"] for e in await store.events("web:c1") if e.type == "customer_message"]
    assert kinds == ["text", "image", "menu"]


async def test_the_conversation_keeps_its_script_and_language_until_a_message_clearly_shows_another(
        small: ConversationEngine, clock: FakeClock) -> None:
    """好的 reads the same in both scripts and used to switch a traditional conversation to simplified; two
    Latin words ("ok thanks", a model name, an e-mail address) switched a Chinese one to English."""
    assert "申請發票" in await ask(small, clock, "請問可以開發票嗎")
    assert "不客氣" in await ask(small, clock, "好的")
    assert "不客氣" in await ask(small, clock, "ok thanks")
    assert "申請發票" in await ask(small, clock, "X2 Pro Max 可以開發票嗎")
    assert [r.lang for r in await small.handle(msg(clock, "Robot Vacuum X2 Pro"))] == ["zh"]  # a name, not English
    assert "申请发票" in await ask(small, clock, "可以开发票吗")  # simplified characters: simplified from here on
    assert [r.lang for r in await small.handle(msg(clock, "can I get an invoice"))] == ["en"]  # a sentence: English


async def test_a_contact_left_after_the_fallback_asked_for_one_becomes_a_ticket(
        small: ConversationEngine, clock: FakeClock, store: SqliteStore) -> None:
    """The fallback promises to look the question up and come back: the contact it asks for used to be read as
    a new question (and asked for again)."""
    assert "留下联系方式" in await ask(small, clock, "火星上的天气怎么样，会下雨吗")
    noted = await ask(small, clock, "我的电话是 138-1234-5678")
    [ticket] = await store.tickets(conversation_id="web:c1")
    assert ticket["id"] in noted and "24小时内" in noted
    assert (ticket["kind"], ticket["question"], ticket["contact"]) == ("question", "火星上的天气怎么样，会下雨吗",
                                                                       "13812345678")
    # Agents see it in their queue at once, first in line (a ticket alone reached nobody until it was overdue).
    assert [c for c, _ in await store.queue_items()] == ["web:c1"]
    # Only right after a fallback: a number after an answered question is not taken as a contact.
    await ask(small, clock, "可以开发票吗", customer="other")
    assert "问题编号" not in await ask(small, clock, "13912345678", customer="other")


async def test_an_order_number_is_context_for_the_question_asked_with_it(
        small: ConversationEngine, clock: FakeClock) -> None:
    """Only the order's status was given: "E… 可以开发票吗" never heard about the invoice, and a second order
    number was ignored."""
    both = await ask(small, clock, "订单E20261110004409可以开发票吗")
    assert "已签收" in both and "申请发票" in both
    assert both.count("请问还有什么可以帮您的吗") == 1
    two = await ask(small, clock, "E20261118001234 和 E20261116002317 这两个单到哪了")
    assert "E20261118001234" in two and "E20261116002317" in two and two.count("请问还有什么可以帮您的吗") == 1
    only = await ask(small, clock, "帮我查下订单E20261118001234到哪了")
    assert "已发货" in only and "申请发票" not in only


async def test_a_thumbs_up_is_thanks_and_leaving_after_an_unhandled_complaint_is_not_resolved(
        small: ConversationEngine, clock: FakeClock, store: SqliteStore, settings: Settings) -> None:
    assert "不客气" in await ask(small, clock, "👍")
    strict = replace(settings, handoff=replace(settings.handoff, triggers=()))  # complaints stay with the bot
    engine = build_engine(strict, store, clock, kb=KnowledgeBase(ENTRIES, SYNONYMS))
    await ask(engine, clock, "我要投诉，快递太慢了", customer="angry")
    await ask(engine, clock, "再见", customer="angry")
    [closed] = [e for e in await store.events("web:angry") if e.type == "closed"]
    assert closed.data["resolved"] is False and closed.data["complaint"] is True


async def test_wechat_customers_are_asked_to_reply_not_to_tap(small: ConversationEngine, clock: FakeClock) -> None:
    """WeChat text has no buttons: "点击" pointed at nothing."""
    for channel in ("wechat", "web"):
        await small.handle(msg(clock, "我要退货", channel=channel))
        text = await ask(small, clock, "E20261118001234", channel=channel)
        assert ("点击" in text) == (channel == "web")  # WeChat lists the items as lines to reply with
    # A number picks the order's item (WeChat customers answer the list that way).
    await ask(small, clock, "1", channel="wechat")
    await ask(small, clock, "尺寸不合适", channel="wechat")
    confirm = await ask(small, clock, "13812345678", channel="wechat")
    assert "智能扫地机器人 X2" in confirm


async def test_several_questions_in_one_message_are_each_answered(small: ConversationEngine, clock: FakeClock) -> None:
    """Matched as one text, two questions got a clarification offering both (or one answer) instead of both."""
    text = await ask(small, clock, "可以开发票吗？另外七天无理由退货怎么申请？")
    assert "申请发票" in text and "签收后7天内无理由退货" in text
    assert text.count("请问还有什么可以帮您的吗") == 1


async def test_a_short_follow_up_is_read_with_the_question_before_it(small: ConversationEngine,
                                                                      clock: FakeClock) -> None:
    """"那运费呢" right after the returns answer means the return shipping: it used to get three choices."""
    await ask(small, clock, "七天无理由退货怎么申请")
    shipping = next(e for e in ENTRIES if e.id == "zh-returns-shipping")
    text = await ask(small, clock, "那运费呢")
    assert shipping.answer.replace("**", "") in text.replace("**", "")
    # Alone, the same words are still offered as choices: the context is the previous question only.
    assert "以下哪个问题" in await ask(small, clock, "那运费呢", customer="new")


async def test_the_last_one_picks_the_last_choice(unsure: ConversationEngine, clock: FakeClock) -> None:
    reply = (await unsure.handle(msg(clock, "退货运费")))[0]
    last = next(e for e in ENTRIES if e.question == reply.suggestions[-1].value)
    assert last.answer.replace("**", "") in (await ask(unsure, clock, "最后一个")).replace("**", "")


async def test_a_contact_in_a_sentence_after_the_fallback_is_taken_but_a_new_question_is_not(
        small: ConversationEngine, clock: FakeClock, store: SqliteStore) -> None:
    await ask(small, clock, "火星上的天气怎么样，会下雨吗")
    assert "问题编号" in await ask(small, clock, "我的手机号是13812345678，麻烦查好了告诉我")
    await ask(small, clock, "量子计算机的原理是什么", customer="b")
    assert "问题编号" not in await ask(small, clock, "发票能发到我邮箱 abc@qq.com 吗", customer="b")
    assert [t["contact"] for t in await store.tickets()] == ["13812345678"]


async def test_an_english_return_form_stays_english_when_a_chinese_product_name_is_tapped(
        small: ConversationEngine, clock: FakeClock) -> None:
    await ask(small, clock, "I want to return my order E20261110004409")
    replies = await small.handle(msg(clock, "人体工学办公椅"))
    assert [r.lang for r in replies] == ["en"]
    assert [r.lang for r in await small.handle(msg(clock, "my name is 王小明, it is too small"))] == ["en"]


async def test_a_paid_order_not_yet_shipped_is_cancelled_not_returned(small: ConversationEngine,
                                                                      clock: FakeClock) -> None:
    assert "取消订单" in await ask(small, clock, "我要退货 E20261119008803")
    assert (await small.state("web", "c1")).flow is None


async def test_questions_on_lines_of_their_own_are_each_answered(small: ConversationEngine, clock: FakeClock,
                                                                  store: SqliteStore) -> None:
    text = await ask(small, clock, "可以开发票吗\n七天无理由退货怎么申请")
    assert "申请发票" in text and "签收后7天内无理由退货" in text
    [stored] = [e.data["text"] for e in await store.events("web:c1") if e.type == "customer_message"]
    assert stored == "可以开发票吗\n七天无理由退货怎么申请"  # kept as written, line break and all


async def test_a_number_past_the_choices_asks_for_one_of_them(unsure: ConversationEngine, clock: FakeClock) -> None:
    reply = (await unsure.handle(msg(clock, "退货运费")))[0]
    count = len(reply.suggestions)
    assert f"1–{count}" in await ask(unsure, clock, str(count + 1))
    first = next(e for e in ENTRIES if e.question == reply.suggestions[0].value)
    assert first.answer.replace("**", "") in (await ask(unsure, clock, "1")).replace("**", "")


async def test_an_order_number_with_two_questions_gets_both_answered(small: ConversationEngine,
                                                                     clock: FakeClock) -> None:
    text = await ask(small, clock, "E20261110004409 可以开发票吗？还有七天无理由退货怎么申请？")
    assert "已签收" in text and "申请发票" in text and "签收后7天内无理由退货" in text
    assert text.count("请问还有什么可以帮您的吗") == 1


async def test_of_several_questions_the_ones_not_known_are_named_not_dropped(small: ConversationEngine,
                                                                             clock: FakeClock) -> None:
    text = await ask(small, clock, "可以开发票吗？七天无理由退货怎么申请？火星上会下雨吗？")
    assert "申请发票" in text and "签收后7天内无理由退货" in text
    assert "“火星上会下雨吗”" in text and "人工" in text
    assert text.count("请问还有什么可以帮您的吗") == 1
