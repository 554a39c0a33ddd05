"""The shop's reply norms as code (reply-norms.md §1): checked on templates, KB answers and agent drafts.

Each rule returns a Violation with a stable code, so `kb lint`, the admin API and the agent console can
show it and tests can assert it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Cold, blame-shifting or reproachful phrases the norms forbid (004 §3, 001 第五条 "三不").
_BANNED_ZH = (
    "不归我管", "你自己看", "自己看", "这不是我们的问题", "不是我们的问题", "不关我们的事", "不关我事",
    "不知道", "没办法", "不可能", "我不清楚", "随便你", "爱买不买", "你怎么回事", "听不懂吗",
    "找别人去", "自己去查", "我也没办法", "跟我没关系", "不是我的事", "你有病", "烦不烦",
)
_BANNED_EN = (
    "not my job", "not my problem", "not our problem", "not my department", "figure it out yourself",
    "calm down", "whatever", "you should have", "i don't know", "i dont know", "your fault",
    "deal with it", "read the manual yourself", "can't help you", "cannot help you",
)
_COURTESY_ZH = ("您", "请", "感谢", "谢谢", "抱歉", "不好意思", "欢迎")
_COURTESY_EN = ("please", "thank", "sorry", "happy to", "glad", "welcome", "we'll", "we will", "you")
MAX_CHARS = {"zh": 600, "en": 1200}
# How a reply opens with a greeting; the bot puts its own opening before an episode's first answer.
_GREETING = {
    "zh": re.compile(r"^\s*(您好|你好|您们好|你们好|亲爱的|亲[，,！!\s]|哈喽|嗨|hello|hi\b|hey\b)", re.IGNORECASE),
    "en": re.compile(r"^\s*(hello|hi|hey|greetings|good (morning|afternoon|evening)|dear)\b", re.IGNORECASE),
}
_NOT_WORDS = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Violation:
    code: str
    detail: str


def check(text: str, lang: str, *, max_chars: int | None = None) -> list[Violation]:
    """Norm violations of one reply text (empty list when it complies)."""
    found: list[Violation] = []
    lowered = text.lower()
    if lang == "zh":
        if "你" in text:
            found.append(Violation("informal_you", "用“您”而不是“你”"))
        for phrase in _BANNED_ZH:
            if phrase in text:
                found.append(Violation("banned_phrase", phrase))
        if not any(word in text for word in _COURTESY_ZH):
            found.append(Violation("no_courtesy", "缺少礼貌用语(您/请/感谢/抱歉)"))
    else:
        for phrase in _BANNED_EN:
            if re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", lowered):
                found.append(Violation("banned_phrase", phrase))
        if not any(word in lowered for word in _COURTESY_EN):
            found.append(Violation("no_courtesy", "no courteous wording (please, thank you, sorry)"))
    limit = max_chars if max_chars is not None else MAX_CHARS.get(lang, 1200)
    if len(text) > limit:
        found.append(Violation("too_long", f"{len(text)} > {limit} characters"))
    if not text.strip():
        found.append(Violation("empty", "empty reply"))
    return found


# check_answer's findings about what the bot adds itself (its greeting, its closing question): an answer
# repeating them reads oddly, not wrongly, so they warn and never block a save.
ANSWER_WARNINGS = ("greeting_start", "repeats_close")


def check_answer(text: str, lang: str, *, close: str) -> list[Violation]:
    """check() for a FAQ answer, which the bot wraps: the opening goes before an episode's first reply and
    faq_answer.j2 adds `close` after every answer, so an answer carrying its own greeting or that close
    reaches the customer with it twice."""
    found = check(text, lang)
    greeting = _GREETING.get(lang, _GREETING["en"]).match(text)
    if greeting:
        found.append(Violation("greeting_start", greeting.group(1).strip()))
    core = _NOT_WORDS.sub("", close).lower()
    if core and _NOT_WORDS.sub("", text).lower().endswith(core):
        found.append(Violation("repeats_close", close))
    return found
