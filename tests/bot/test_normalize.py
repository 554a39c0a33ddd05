"""The normaliser folds script, width, case, punctuation and synonyms, and never fails on any text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.normalize import Normalizer, detect_lang, to_simplified, to_traditional, written_traditional

SYNONYMS = {
    "zh": [["运费", "邮费", "快递费"], ["发货", "出货"]],
    "en": [["refund", "money back", "reimbursement"], ["shipping", "delivery"]],
}


def test_traditional_becomes_simplified() -> None:
    assert to_simplified("退貨運費誰承擔") == "退货运费谁承担"
    assert Normalizer()("退貨運費誰承擔？") == "退货运费谁承担"


def test_simplified_becomes_traditional() -> None:
    assert to_traditional("退货运费") == "退貨運費"


def test_conversion_is_applied_until_stable() -> None:
    once = to_simplified("薴")
    assert to_simplified(once) == once


def test_the_script_a_text_shows_and_none_when_it_reads_the_same_in_both() -> None:
    assert written_traditional("請問怎麼退貨") is True
    assert written_traditional("请问怎么退货") is False
    assert written_traditional("好的") is None and written_traditional("嗯嗯") is None
    assert written_traditional("hello") is None and written_traditional("") is None


def test_traditional_replies_use_the_forms_taiwan_and_hong_kong_readers_write() -> None:
    assert to_traditional("为您核实，实木双人床") == "為您核實，實木雙人床"  # not 爲, 覈實, 牀


def test_detect_lang() -> None:
    assert detect_lang("how do I return it") == "en"
    assert detect_lang("iPhone 怎么退") == "zh"
    assert detect_lang("🙂 123") == "en"


def test_full_width_case_and_punctuation_are_folded() -> None:
    normalize = Normalizer()
    assert normalize("ＨＥＬＬＯ，Ｗｏｒｌｄ！！") == "hello world"
    assert normalize("  How   do\tI\nreturn it??? 😡😡 ") == "how do i return it"
    assert normalize("ｉＰｈｏｎｅ１５怎麼退？") == "iphone15怎么退"


def test_emoji_punctuation_and_controls_alone_become_empty() -> None:
    normalize = Normalizer()
    for text in ("🙂🙂", "？！。，", "\x00\x01\x7f", "   ", "", "___"):
        assert normalize(text) == ""


def test_surrogates_nul_and_long_texts_do_not_fail() -> None:
    normalize = Normalizer()
    assert normalize("a\ud800b\x00c") == "ab c"
    assert normalize("退" * 10_000) == "退" * 10_000
    assert to_simplified("運\udfff費") == "运费"
    assert written_traditional("\ud800") is None


def test_chinese_synonyms_replace_substrings_longest_first() -> None:
    normalize = Normalizer(SYNONYMS)
    assert normalize("退货邮费谁出") == "退货运费谁出"
    assert normalize("快递费多少") == "运费多少"
    assert normalize("什么时候出货") == "什么时候发货"


def test_english_synonyms_replace_whole_words_and_phrases_only() -> None:
    normalize = Normalizer(SYNONYMS)
    assert normalize("I want my MONEY BACK!") == "i want my refund"
    assert normalize("Reimbursement, please") == "refund please"
    assert normalize("delivery time") == "shipping time"
    assert normalize("deliveryman moneybackguarantee") == "deliveryman moneybackguarantee"


def test_synonym_groups_are_normalised_like_text() -> None:
    normalize = Normalizer({"zh": [["运费", "郵費"]], "en": [["refund", "ＭＯＮＥＹ-ＢＡＣＫ"]]})
    assert normalize("郵費") == "运费"
    assert normalize("money back") == "refund"


def test_odd_synonym_data_is_tolerated() -> None:
    normalize = Normalizer({"zh": [[], ["运费"], ["运费", "", "运费"]], "en": [["!!", "??"]]})
    assert normalize("运费？") == "运费"


@settings(max_examples=300)
@given(st.text())
def test_never_fails_and_is_idempotent(text: str) -> None:
    normalize = Normalizer(SYNONYMS)
    once = normalize(text)
    assert isinstance(once, str)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once


@settings(max_examples=100)
@given(st.text(alphabet=st.characters(min_codepoint=0x3000, max_codepoint=0xFFEF), max_size=40))
def test_cjk_and_full_width_texts_are_idempotent(text: str) -> None:
    normalize = Normalizer(SYNONYMS)
    assert normalize(normalize(text)) == normalize(text)


@given(st.text(max_size=2_000).map(lambda s: s * 5))
def test_long_texts(text: str) -> None:
    assert isinstance(Normalizer()(text), str)
    assert isinstance(detect_lang(text), str)
    assert written_traditional(text) in (True, False, None)
    assert isinstance(to_traditional(text), str)
