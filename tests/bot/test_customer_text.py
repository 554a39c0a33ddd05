"""Reading a customer's message apart from the rule words: its questions, what it quotes back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.customer_text import language_of, question_parts, quoted


def test_the_questions_of_a_message() -> None:
    assert question_parts("包邮吗？另外安装收费吗？还有多久发货") == ["包邮吗", "安装收费吗", "多久发货"]
    assert question_parts("还有货吗") == ["还有货吗"]  # 还有 is part of the question here
    assert question_parts("Is it in stock? Also, can I pay in installments?") == ["Is it in stock",
                                                                                "can I pay in installments"]


@given(st.text(max_size=300))
def test_question_parts_are_pieces_of_the_message(text: str) -> None:
    parts = question_parts(text)
    assert all(part and part in text for part in parts)


def test_customer_words_quoted_in_a_reply_carry_no_markup() -> None:
    assert quoted("[点我](javascript:alert(1)) **免费**吗") == "点我javascript:alert1 免费吗"
    assert quoted("很" * 50).endswith("…") and len(quoted("很" * 50)) == 31


def test_what_switches_a_conversations_language() -> None:
    assert language_of("my name is 王小明, phone 13812345678", "en") is None  # a name is no switch to Chinese
    assert language_of("人体工学办公椅", "en") == "zh"
    assert language_of("Robot Vacuum X2 Pro", "zh") is None and language_of("wo yao tui huo", "zh") is None
    assert language_of("where is my order", "zh") == "en"
    assert language_of("ok thanks", "zh") is None and language_of("ok thanks", None) == "en"
