"""How a customer's message is read besides the rule words: cleaned for storing, its language, the questions
in it, a pick from a numbered list, whether it leans on the message before. Pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata

from bot.normalize import cjk_count, detect_lang, has_cjk, letter_count, to_simplified

MAX_TEXT_CHARS = 2000
QUOTE_CHARS = 30
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028-\u202e\ufeff]")
_MEANINGFUL = re.compile(r"[0-9A-Za-z\u3400-\u9fff\uf900-\ufaff]")
# A pick from a numbered list: "2", "第二个", "2号吧", "选3", "the second one", "2nd", "option 12".
_ZH_NUMERALS = {**{c: i for i, c in enumerate("一二三四五六七八九十", start=1)}, "最后": -1}
_EN_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1,
                "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_PICK = re.compile(r"^(?:选|要|是|就)?第?(\d{1,2}|[一二三四五六七八九十]|最后)(?:一个|那个|个|号|条|项|种)?(?:问题)?[吧啊呀哦的]*$"
                   r"|^(?:the\s+)?(?:number\s+|option\s+|no\.?\s*|#)?"
                   r"(\d{1,2}|first|second|third|fourth|fifth|last|one|two|three|four|five)"
                   r"(?:st|nd|rd|th)?(?:\s+one)?(?:\s+please)?$")
_EN_GRAMMAR = frozenset("""a an the is are was were be am do does did can could will would should may i you he she it we
they me my your our their this that these those what when where why how which who to of for in on at with from and or not
no yes please have has had there""".split())
_ADDRESSES = re.compile(r"\S+@\S+|https?://\S+|www\.\S+", re.I)  # e-mail addresses and links: no language
_MARKUP_CHARS = re.compile(r"[*\[\]()<>`]")
# What marks a message as leaning on the one before: a joining word in front ("那要多久", "and how much"), a word
# pointing back ("这个", "it"), or 呢 at the end ("纸质的呢"). "运费" alone is a new, vague question.
_LEANS_BACK = re.compile(r"^(?:那|还有|另外|然后|如果|再问)|这个|那个|这款|那款|它|呢\W*$"
                         r"|^(?:and|what about|how about|then|so|also|but)\b|\b(?:it|that|this|those|them|they)\b", re.I)
_SENTENCE_END = re.compile(r"[?？。；;!！\n]+|(?<=[a-z])\.\s+", re.I)
_JOINING = re.compile(r"^(?:另外|还有|还想问一?下|再问一?下|以及|并且|and also|also|and|besides|plus)[\s,，、]*", re.I)


def clean_text(text: str) -> str:
    """Customer text made safe to store and match: no control characters, bounded length; line breaks kept
    (one each), since a customer who puts questions on lines of their own is asking several."""
    text = _CONTROL.sub("", text.encode("utf-8", "replace").decode("utf-8"))
    text = re.sub(r"\s*\n\s*", "\n", re.sub(r"[^\S\n]+", " ", text)).strip()
    return text[:MAX_TEXT_CHARS]


def says_anything(text: str) -> bool:
    """A letter, digit or Chinese character, full-width ones (２, Ａ) included: not only emoji or punctuation."""
    return _MEANINGFUL.search(unicodedata.normalize("NFKC", text)) is not None


def language_of(text: str, current: str | None) -> str | None:
    """The language a message is written in, or None when it does not say (digits, emoji, "ok").

    A few Latin words inside a Chinese conversation ("ok thanks", a model name like "X2 Pro Max", an e-mail
    address) are not a switch to English: that takes a sentence of three words or more."""
    words = re.findall(r"[A-Za-z]+", _ADDRESSES.sub(" ", text))
    if has_cjk(text):
        # A name or an address in Chinese inside an English sentence ("my name is 王小明") is not a switch.
        return "zh" if current != "en" or cjk_count(text) > len(words) else None
    if not any(len(w) > 1 for w in words):
        return None
    # From another language, English takes a sentence: three words, one of them a grammar word ("Robot Vacuum X2
    # Pro" and pinyin are not English sentences).
    if current not in (None, "en") and (len(words) < 3 or not _EN_GRAMMAR.intersection(w.lower() for w in words)):
        return None
    return detect_lang(text)


def question_parts(text: str) -> list[str]:
    """The sentences of a message that may each ask something: split at sentence ends (？。；!), a joining word
    in front left out (另外, 还有, also) when enough is left after it ("还有货吗" keeps its 还有)."""
    parts = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip(" ,，、")
        joined = _JOINING.match(sentence)
        if joined and letter_count(sentence[joined.end():]) >= 3:
            sentence = sentence[joined.end():]
        if letter_count(sentence) >= 2:
            parts.append(sentence)
    return parts


def leans_back(text: str) -> bool:
    """The message leans on the one before it ("那要多久？", "and how much is it?", "纸质的呢")."""
    return _LEANS_BACK.search(text) is not None


def picked(text: str) -> int | None:
    """The number picked from a list (-1 for "the last one"), or None when the message is not a pick."""
    t = to_simplified(unicodedata.normalize("NFKC", text)).strip().lower().strip(" .。!！~～,，、")
    m = _PICK.match(t)
    if m is None:
        return None
    word = m.group(1) or m.group(2)
    if word.isdigit():
        return int(word)
    return _ZH_NUMERALS.get(word) or _EN_ORDINALS[word]


def quoted(text: str) -> str:
    """Customer words repeated in a reply: without reply markup (no bold or link of theirs in the bot's voice),
    cut to a quotable length."""
    text = _MARKUP_CHARS.sub("", text).strip()
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"
