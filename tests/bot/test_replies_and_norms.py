"""Every template renders with its documented sample under StrictUndefined and follows the reply norms."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.knowledge import load_dir
from bot.norms import check, check_answer
from bot.replies import ReplyRenderer
from tests.conftest import ROOT

RENDERER = ReplyRenderer(ROOT / "reply_templates")
TEMPLATES = [(lang, name) for lang in ("zh", "en") for name in RENDERER.names(lang)]


def test_both_languages_have_the_same_templates() -> None:
    assert RENDERER.names("zh") == RENDERER.names("en")
    assert len(RENDERER.names("zh")) >= 20


@pytest.mark.parametrize(("lang", "name"), TEMPLATES)
def test_template_renders_its_sample_and_follows_the_norms(lang: str, name: str) -> None:
    text = RENDERER.render(name, lang, **RENDERER.sample_context(name, lang))
    assert text.strip()
    if name.startswith("label_"):  # button labels, not replies
        return
    assert check(text, lang) == [], text


def test_missing_context_fails_loudly() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        RENDERER.render("opening", "zh")


def test_kept_renderings_never_mix_up_contexts(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "show.j2").write_text("{{ value }}|{{ items | join(',') }}", encoding="utf-8")
    renderer = ReplyRenderer(tmp_path)
    seen = [renderer.render("show", "zh", value=v, items=i) for v, i in
            [(1, ["a"]), (True, ["a"]), (1.0, ["a"]), (1, ["b"]), (None, []), (1, ["a"])]]
    assert seen == ["1|a", "True|a", "1.0|a", "1|b", "None|", "1|a"]
    marker = object()  # not plain data: rendered every time, never kept
    assert renderer.render("show", "zh", value=marker, items=[]) == f"{marker}|"


@pytest.mark.parametrize(
    ("text", "lang", "code"),
    [
        ("你好，这个不归我管。", "zh", "banned_phrase"),
        ("你可以自己去订单页看。", "zh", "informal_you"),
        ("这不是我们的问题，请您联系快递。", "zh", "banned_phrase"),
        ("发货时间三天。", "zh", "no_courtesy"),
        ("That's not my job, please ask the courier.", "en", "banned_phrase"),
        ("Calm down, we will check.", "en", "banned_phrase"),
        ("Shipping takes 3 days.", "en", "no_courtesy"),
        ("请您" + "很长" * 400, "zh", "too_long"),
    ],
)
def test_checker_catches_each_norm(text: str, lang: str, code: str) -> None:
    assert code in {v.code for v in check(text, lang)}


def test_checker_passes_a_model_reply() -> None:
    assert check("您好，请您在订单页面点击“申请退货”，感谢您的耐心！", "zh") == []
    assert check("Please open your order page and tap Return. Thank you!", "en") == []


@pytest.mark.parametrize(
    ("text", "lang", "code"),
    [
        ("您好，可以的，请您放心购买。", "zh", "greeting_start"),
        ("你好！本店支持7天无理由退货，请您放心。", "zh", "greeting_start"),
        ("亲，请您在订单页申请退货。", "zh", "greeting_start"),
        ("Hello, you can return it within **7 days**, thank you.", "en", "greeting_start"),
        ("Hi there! Please open your order page.", "en", "greeting_start"),
        ("QA测试答案：**退货运费**由本店承担，请您放心。\n请问还有什么可以帮您的吗？", "zh", "repeats_close"),
        ("退货运费由本店承担，请您放心。请问还有什么可以帮您的吗?", "zh", "repeats_close"),
        ("Please open your order page. Is there anything else I can help you with?", "en", "repeats_close"),
    ],
)
def test_answer_check_warns_about_what_the_bot_adds_by_itself(text: str, lang: str, code: str) -> None:
    """The customer would get the greeting or the close twice: the opening and faq_answer.j2 add them."""
    assert code in {v.code for v in check_answer(text, lang, close=RENDERER.answer_close(lang))}


def test_answer_check_leaves_look_alikes_and_agent_replies_alone() -> None:
    for text, lang in (("亲子装请您参考尺码表。", "zh"), ("您可以在“您好生活”公众号查询，感谢支持。", "zh"),
                       ("History of your orders: please open the order page.", "en"),
                       ("Hint: please keep the box. Thank you!", "en")):
        assert check_answer(text, lang, close=RENDERER.answer_close(lang)) == [], text
    # An agent greets in their own reply: only answers the bot wraps get these warnings.
    assert check("您好，请您稍等，我来帮您查一下。", "zh") == []


def test_every_sample_kb_answer_follows_the_norms() -> None:
    kb = load_dir(ROOT / "knowledge_base")
    found = {e.id: check_answer(e.answer, e.lang, close=RENDERER.answer_close(e.lang)) for e in kb.entries}
    assert {entry: v for entry, v in found.items() if v} == {}
