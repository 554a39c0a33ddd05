from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.intents import IntentRules
from tests.conftest import ROOT

RULES = IntentRules.from_file(ROOT / "knowledge_base" / "intents.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好", "greeting"), ("您好呀~", "greeting"), ("在吗？", "greeting"), ("Hello!", "greeting"),
        ("谢谢", "thanks"), ("好的，谢谢您！", "thanks"), ("thanks a lot", "thanks"),
        ("再见", "goodbye"), ("没有了，谢谢，再见", "goodbye"), ("bye", "goodbye"),
        ("你好，我想问下退货怎么弄", None), ("hi, where is my parcel", None), ("好评返现怎么弄", None),
        ("謝謝", "thanks"), ("hi there", "greeting"), ("Hello everyone!", "greeting"), ("thanks guys", "thanks"),
        ("hi there, is there a discount", None), ("亲", "greeting"), ("哦", None), ("哈哈", None), ("oh", None),
        ("thank u", "thanks"), ("cool", "thanks"), ("lol", None),
        ("老板你好", "greeting"), ("掌柜的在吗", "greeting"), ("谢谢老板", "thanks"), ("老板，这个冰箱有货吗", None),
        # The answer to "请问还有什么可以帮您的吗？"
        ("没有", "goodbye"), ("没了", "goodbye"), ("暂时没有了，谢谢", "goodbye"), ("no thanks", "goodbye"),
        ("nope, that's it", "goodbye"), ("No, that's all.", "goodbye"),
    ],
)
def test_small_talk_only_when_that_is_all(text: str, expected: str | None) -> None:
    assert RULES.small_talk(text) == expected


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("你好，请问怎么退货", "怎么退货"), ("亲，在吗？运费多少", "运费多少"), ("老板你好，有发票吗", "有发票吗"),
        ("您好请问多久发货", "多久发货"), ("hi there, where is my order", "where is my order"),
        ("Hello! Where is my order?", "where is my order?"), ("excuse me, can I pay by card", "can i pay by card"),
        # Not a greeting in front: kept as written.
        ("亲子装有吗", "亲子装有吗"), ("his order is late", "his order is late"), ("怎么退货", "怎么退货"),
        ("hello", "hello"), ("请问", "请问"),
    ],
)
def test_the_question_part_leaves_greetings_and_polite_openings_out(text: str, question: str) -> None:
    assert RULES.question_part(text) == question


@pytest.mark.parametrize(
    "text", ["转人工", "我要找人工客服", "真人在吗", "I want to talk to a human", "can I speak to a person", "轉人工"]
)
def test_asking_for_a_person(text: str) -> None:
    assert RULES.read(text).wants_human


@pytest.mark.parametrize("text", ["人工", "agent", "I need to speak with someone from your team", "别跟我机器人聊了 给我找个人"])
def test_asking_for_a_person_in_a_word_or_in_other_words(text: str) -> None:
    assert RULES.read(text).wants_human


@pytest.mark.parametrize("text", ["人工智能扫地机有哪些", "how do I return an item", "安装的人工费怎么算",
                                  "is the table handmade or is it human made"])
def test_not_asking_for_a_person(text: str) -> None:
    assert not RULES.read(text).wants_human


@pytest.mark.parametrize("text", [
    "扫地机器人的滚刷怎么拆下来清理", "我买的滚筒洗衣机不脱水", "扫地机器人充电到一半就停了怎么回事", "热水器烧水要多久，水烧了半小时还不热",
    "油烟机吸烟效果怎么样，做饭冒烟多吗", "最近搞什么活动吗", "how long do I press the wifi button on the robot vacuum?",
    "do you have a social media account?", "can the fire tv stick work with your smart tv?",
    "this sofa is so comfortable my back doesn't hurt anymore", "worst case, can I return it after 7 days?",
    "燃气报警器怎么安装", "这款热水器有防漏电功能吗", "热水器的漏电保护插头指示灯不亮怎么办", "用空气炸锅炸了鸡翅，篮子怎么清洗",
    "空气炸锅会不会烧焦食物", "办公椅的轮子会不会划伤木地板", "儿童床的护栏能防止孩子受伤吗", "我们是律师事务所，能开增值税专票吗",
    "天太热了受不了，空调最快什么时候能装", "你们的客服电话是多少",
])
def test_ordinary_questions_are_not_read_as_complaints_or_anger(text: str) -> None:
    """A rule word inside a product name or a calm question (滚筒, 充电到, fire tv) sent the customer to the
    queue as angry or as a safety incident instead of answering."""
    reading = RULES.read(text)
    assert reading.complaint is None and not reading.agitated and not reading.wants_human


# Sample-shop entries that are about exactly what a rule handles: a safety incident, a complaint, starting a return.
_ABOUT_A_RULE = {"en-repair_warranty-safety", "zh-repair_warranty-safety", "zh-contact-complaint",
                 "en-returns-how", "en-returns-defective", "zh-returns-7day", "zh-returns-info-needed"}


def test_the_sample_shops_questions_reach_the_faq() -> None:
    """Rules run before the FAQ: a rule word in an FAQ phrasing would keep customers from its answer."""
    from bot.knowledge import load_dir

    caught = []
    for entry in load_dir(ROOT / "knowledge_base").entries:
        for phrasing in entry.phrasings:
            r = RULES.read(phrasing)
            if r.complaint or r.agitated or r.wants_human or r.return_request or r.small_talk:
                caught.append(entry.id)
    assert caught and set(caught) <= _ABOUT_A_RULE


@pytest.mark.parametrize("text", ["滚！", "你给我滚", "无语"])
def test_anger_in_a_word(text: str) -> None:
    assert RULES.read(text).agitated


def test_complaint_severity_and_category() -> None:
    major = RULES.read("热水器漏电了，孩子差点触电")
    assert major.complaint is not None and major.complaint.severity == "major"
    general = RULES.read("物流太慢了，我要投诉")
    assert general.complaint is not None
    assert (general.complaint.severity, general.complaint.category) == ("general", "logistics")
    assert RULES.read("退货运费谁出").complaint is None
    rude = RULES.read("your delivery guy was super rude to my mom, I want to complain").complaint
    assert rude is not None and rude.category == "service_attitude"  # not "logistics": it is about manners


@pytest.mark.parametrize("text", ["热水器漏电了，孩子差点触电", "我手被烫伤了", "我要报警", "有股烧焦的味道", "我要找律师告你们"])
def test_safety_incidents_and_threats_are_major(text: str) -> None:
    complaint = RULES.read(text).complaint
    assert complaint is not None and complaint.severity == "major"


def test_a_word_that_holds_a_rule_word_without_meaning_it() -> None:
    assert not RULES.read("我想退订你们的营销短信").return_request  # 退订 holds 我想退
    assert RULES.read("我想退货").return_request


def test_agitation_and_shouting() -> None:
    assert RULES.read("气死我了").agitated
    assert RULES.read("WHERE IS MY ORDER I PAID A WEEK AGO").agitated
    assert not RULES.read("where is my order").agitated
    assert not RULES.read("A" * 300).agitated and not RULES.read("ABCDEF123456XYZ").agitated  # a mashed key, a token


def test_yes_no_cancel_lists() -> None:
    assert RULES.is_only("yes", "确认") and RULES.is_only("yes", "好的")
    assert RULES.is_only("no", "修改") and not RULES.is_only("yes", "修改")
    assert RULES.is_only("cancel", "算了") and not RULES.is_only("cancel", "取消订单怎么操作")
    assert RULES.is_only("cancel", "那算了")
    # Longer phrases first: "none" alone used to match and leave "of these" behind.
    assert all(RULES.is_only("none_of_these", t) for t in ("none of these", "none of them", "不是这个"))


@given(st.text(max_size=300))
def test_rules_never_raise(text: str) -> None:
    RULES.read(text)
    RULES.small_talk(text)
    question = RULES.question_part(text)
    assert question == text or question.strip()  # the whole message, or a rest that still says something
