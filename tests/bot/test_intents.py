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


@pytest.mark.parametrize("text", ["人工智能扫地机有哪些", "how do I return an item"])
def test_not_asking_for_a_person(text: str) -> None:
    assert not RULES.read(text).wants_human


def test_complaint_severity_and_category() -> None:
    major = RULES.read("热水器漏电了，孩子差点触电")
    assert major.complaint is not None and major.complaint.severity == "major"
    general = RULES.read("物流太慢了，我要投诉")
    assert general.complaint is not None
    assert (general.complaint.severity, general.complaint.category) == ("general", "logistics")
    assert RULES.read("退货运费谁出").complaint is None


def test_agitation_and_shouting() -> None:
    assert RULES.read("气死我了").agitated
    assert RULES.read("WHERE IS MY ORDER I PAID A WEEK AGO").agitated
    assert not RULES.read("where is my order").agitated


def test_yes_no_cancel_lists() -> None:
    assert RULES.is_only("yes", "确认") and RULES.is_only("yes", "好的")
    assert RULES.is_only("no", "修改") and not RULES.is_only("yes", "修改")
    assert RULES.is_only("cancel", "算了") and not RULES.is_only("cancel", "取消订单怎么操作")


@given(st.text(max_size=300))
def test_rules_never_raise(text: str) -> None:
    RULES.read(text)
    RULES.small_talk(text)
    question = RULES.question_part(text)
    assert question == text or question.strip()  # the whole message, or a rest that still says something
