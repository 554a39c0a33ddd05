"""Text normalisation shared by the matcher, the intent rules and the KB checks.

Customers type traditional or simplified characters, full-width letters, emoji and stray punctuation;
the knowledge base is written one way. Mapping both sides onto one plain form is the cheapest accuracy
gain the matcher has (traditional queries lose about a third of top-1 without it).
Pure functions, no I/O; the OpenCC converters are created once (when the first Normalizer is built).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

import opencc

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_RUN_RE = re.compile(f"[{_CJK}]+")
_SURROGATES_RE = re.compile("[\ud800-\udfff]")
# Anything that is not a letter or digit (punctuation, symbols, emoji, controls, whitespace, "_").
_NON_WORD_RE = re.compile(r"[\W_]+")
_MAX_PASSES = 3  # t2s is idempotent but for a handful of characters (薴→苧→苎)


@lru_cache(maxsize=None)
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def _convert(config: str, text: str) -> str:
    """OpenCC conversion that cannot fail: lone surrogates cannot be encoded for the C++ side."""
    if text.isascii():
        return text
    clean = _SURROGATES_RE.sub("", text)
    return str(_converter(config).convert(clean))


@lru_cache(maxsize=1024)
def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese (anything else unchanged), applied until stable.

    Kept for recent texts: one message passes through here several times (language, rules, matcher)."""
    for _ in range(_MAX_PASSES):
        out = _convert("t2s", text)
        if out == text:
            break
        text = out
    return text


# Traditional characters as Taiwan and Hong Kong readers write them (為, 核實, 床): OpenCC's plain s2t gives the
# historical forms (爲, 覈實, 牀), which read as odd.
_TO_TRADITIONAL = "s2tw"


@lru_cache(maxsize=512)
def to_traditional(text: str) -> str:
    """Simplified → traditional Chinese, for answering a customer in the script they wrote in.

    Kept for recent texts: replies are rendered from a few templates, and OpenCC takes ~50 µs a reply."""
    return _convert(_TO_TRADITIONAL, text)


def written_traditional(text: str) -> bool | None:
    """Which script the text shows: True traditional, False simplified, None when its Chinese reads the same
    in both (好的, 嗯嗯, 谢谢 is simplified but 好 is both) or it has none; then the conversation keeps its own."""
    han = "".join(_CJK_RUN_RE.findall(text))
    if not han:
        return None
    if to_simplified(han) != han:
        return True
    return False if to_traditional(han) != han else None


_WORDS_RE = re.compile(r"[A-Za-z]+|[^\W\d_A-Za-z]")
_LETTERS_RE = re.compile(r"[^\W_]")


def word_count(text: str) -> int:
    """English words and Chinese characters (each counts as a word): how much a message says."""
    return len(_WORDS_RE.findall(text))


def letter_count(text: str) -> int:
    """Letters, digits and Chinese characters: how long a text is without its spaces and punctuation."""
    return len(_LETTERS_RE.findall(text))


def cjk_count(text: str) -> int:
    return len(_CJK_RE.findall(text))


_ASKS_RE = re.compile(r"[?？]\s*$|[吗呢么嘛][?？。!！~～\s]*$")


def asks(text: str) -> bool:
    """The message ends as a question does: a question mark, or a question particle (吗, 呢) at its end."""
    return _ASKS_RE.search(text) is not None


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def detect_lang(text: str) -> str:
    """"zh" when the text has any Chinese character, else "en"."""
    return "zh" if has_cjk(text) else "en"


def _plain(text: str) -> str:
    """Script, width, case and punctuation folded; words separated by single spaces."""
    text = _SURROGATES_RE.sub("", text)
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NON_WORD_RE.sub(" ", text)
    text = to_simplified(text)
    # Folding can expose new foldable characters (e.g. a decomposition that lower-cases again).
    again = _NON_WORD_RE.sub(" ", unicodedata.normalize("NFKC", text).lower())
    return " ".join(again.split())


def _compile_synonyms(groups: Sequence[Sequence[str]], whole_words: bool) -> tuple[re.Pattern[str] | None,
                                                                                   dict[str, str]]:
    """One alternation of every alternative, longest first, so a single pass replaces them all."""
    table: dict[str, str] = {}
    for group in groups:
        words = [_plain(w) for w in group if isinstance(w, str)]
        words = [w for w in words if w]
        if not words:
            continue
        for alt in words[1:]:
            if alt != words[0]:
                table.setdefault(alt, words[0])
    if not table:
        return None, table
    alternation = "|".join(re.escape(a) for a in sorted(table, key=lambda a: (-len(a), a)))
    pattern = rf"(?<!\S)(?:{alternation})(?!\S)" if whole_words else alternation
    return re.compile(pattern), table


class Normalizer:
    """Folds a text to the matcher's plain form; synonym alternatives become their group's first word.

    `synonyms` is `{"zh": [[canonical, alt, ...], ...], "en": [...]}`: Chinese alternatives are replaced
    wherever they occur, English ones only as whole words or phrases. A canonical word should not itself
    contain another group's alternative, or normalising twice would change the text again.
    """

    def __init__(self, synonyms: Mapping[str, Sequence[Sequence[str]]] | None = None) -> None:
        synonyms = synonyms or {}
        # Loading a converter's dictionaries takes ~40 ms: at start-up, not during a customer's first question.
        _converter("t2s"), _converter(_TO_TRADITIONAL)
        self._zh = _compile_synonyms(synonyms.get("zh", ()), whole_words=False)
        self._en = _compile_synonyms(synonyms.get("en", ()), whole_words=True)

    def __call__(self, text: str) -> str:
        text = _plain(text)
        for pattern, table in (self._zh, self._en):
            if pattern is not None and text:
                text = pattern.sub(lambda m: table[m.group(0)], text)
        return text
