"""Every template renders with its documented sample under StrictUndefined and follows the reply norms."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.knowledge import load_dir
from bot.norms import check
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


def test_every_sample_kb_answer_follows_the_norms() -> None:
    kb = load_dir(ROOT / "knowledge_base")
    bad = {e.id: check(e.answer, e.lang) for e in kb.entries if check(e.answer, e.lang)}
    assert bad == {}
