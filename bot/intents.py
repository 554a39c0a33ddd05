"""Rule intents read before the FAQ: small talk, asking for a person, complaints, return requests.

The word lists are shop data (knowledge_base/intents.yaml), not code. Pure and synchronous.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.normalize import to_simplified

# Particles and fillers that do not change what a short message means.
_ZH_FILLER = re.compile(r"[啊呀哦吧呢啦哈嘛了的~～亲哟噢喔滴]")
_ZH_ADDRESS_WORDS = ("老板", "掌柜的", "掌柜", "店家", "小姐姐", "小哥哥", "美女", "帅哥", "亲爱的")  # whom it is said to
_ZH_ADDRESS = re.compile("|".join(_ZH_ADDRESS_WORDS))
# Polite openings that ask nothing themselves ("请问多久发货" asks what "多久发货" asks).
_POLITE_OPENINGS = ("请问一下", "请问下", "请问", "我想问一下", "我想问下", "想问一下", "想问下", "问一下", "问下", "打扰一下",
                    "麻烦问一下", "excuse me", "quick question", "may i ask", "can i ask", "i have a question")
_LEAD_SEP = r"[\s,，.。!！?？~～、:：;；]"
_EN_ADDRESS_WORDS = ("there", "guys", "everyone", "all", "team", "dear")  # whom it is said to: "hi there"
_EN_FILLER = {"so", "much", "very", "a", "lot", "you", "again", "the", "for", "your", "help", "and", "oh", "ok", "okay",
              "please", "lol", "haha", "hehe", "hmm", "um", "uh", *_EN_ADDRESS_WORDS}
_PUNCT = re.compile(r"[\W_]+", re.U)
_UPPER, _LOWER, _WORD = re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[a-z]+")
SMALL_TALK = ("goodbye", "thanks", "greeting")
CATEGORIES = ("product_quality", "service_attitude", "logistics", "after_sales", "other")
_READINGS = 4096  # readings kept: a shop hears the same short messages all day


@dataclass(frozen=True)
class Complaint:
    severity: str  # "major" or "general"
    category: str  # one of CATEGORIES


@dataclass(frozen=True)
class RuleReading:
    """What the rules read in one message; the engine decides what to do with it."""

    small_talk: str | None
    wants_human: bool
    complaint: Complaint | None
    agitated: bool
    return_request: bool
    filler: bool  # nothing but particles and fillers (哦, 哈哈, oh): no question to look up
    question: str  # what to ask the FAQ: the message without a greeting or polite opening in front


class _WordList:
    """Words found and cut out in one regular-expression pass each (a Python loop over the words cost
    more than the rest of reading a message)."""

    def __init__(self, zh: Sequence[str], en: Sequence[str]) -> None:
        self.zh = tuple(w for w in sorted((_clean(w) for w in zh), key=len, reverse=True) if w)
        self.en = tuple(w for w in sorted((_clean(w) for w in en), key=len, reverse=True) if w)
        parts = [re.escape(w) for w in self.zh]
        if self.en:
            parts.append(r"(?<![a-z0-9'])(?:" + "|".join(re.escape(w) for w in self.en) + r")(?![a-z0-9'])")
        self._re = re.compile("|".join(parts)) if parts else None

    def found_in(self, text: str) -> bool:
        return bool(self._re and self._re.search(text))

    def strip_from(self, text: str) -> str:
        return self._re.sub(" ", text) if self._re else text


class IntentRules:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        def words(name: str, kind: str) -> _WordList:
            table = spec.get(name, {}).get(kind, {}) or {}
            return _word_list(f"{name}.{kind}", table)

        self._only = {name: words(name, "only")
                      for name in (*SMALL_TALK, "cancel", "cancel_firmly", "yes", "no", "none_of_these")}
        # All small-talk words together, longest first, so "你好" is not cut by the thanks word "好".
        self._small_talk = _WordList(
            [w for name in SMALL_TALK for w in self._only[name].zh], [w for name in SMALL_TALK for w in self._only[name].en]
        )
        names = ("human", "complaint", "major", "agitation", "return_request", "no_contact", "order_status", "unsolved",
                 "solved", "waiting")
        self._any = {name: words(name, "any") for name in names}
        # Words that contain a list's word without meaning it (报警器 holds 报警, 退订 holds 退): cut out first.
        self._not = {name: words(name, "not") for name in names}
        # Words that ask for a person or show anger when they are the whole message (人工, 滚), not inside one.
        self._alone = {name: words(name, "only") for name in ("human", "agitation")}
        self._categories = {
            name: _word_list(f"categories.{name}", lists) for name, lists in (spec.get("categories") or {}).items()
        }
        self._readings: OrderedDict[str, RuleReading] = OrderedDict()
        self._lead = _lead_pattern(self._only["greeting"])

    @classmethod
    def from_file(cls, path: Path) -> IntentRules:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

    def read(self, text: str) -> RuleReading:
        """What the rules find in `text`; kept for recent texts (reading was a tenth of a message's cost)."""
        reading = self._readings.get(text)
        if reading is None:
            reading = self._readings[text] = self._read(text)
            if len(self._readings) > _READINGS:
                self._readings.popitem(last=False)
        else:
            self._readings.move_to_end(text)
        return reading

    def _read(self, text: str) -> RuleReading:
        t = _clean(text)
        human = self._has("human", t) or _is_only(self._alone["human"], t)
        major = self._has("major", t)
        complaint_word = self._has("complaint", t)
        agitated = self._has("agitation", t) or _is_only(self._alone["agitation"], t) or _shouting(text)
        complaint = None
        if major or complaint_word:
            complaint = Complaint("major" if major else "general", self._category(t))
        return RuleReading(
            small_talk=self._small_talk_of(t),
            wants_human=human,
            complaint=complaint,
            agitated=agitated,
            return_request=self._has("return_request", t),
            filler=not _residue(t),
            question=self._question(t, text),
        )

    def small_talk(self, text: str) -> str | None:
        """greeting / thanks / goodbye when the message is nothing more than that."""
        return self._small_talk_of(_clean(text))

    def _small_talk_of(self, t: str) -> str | None:
        if _residue(self._small_talk.strip_from(t)):
            return None
        for name in SMALL_TALK:  # one kind says it all ("你好" is a greeting, though 好 is a thanks word)
            if _is_only(self._only[name], t):
                return name
        for name in SMALL_TALK:  # a mix: goodbye, then thanks, then greeting
            if self._only[name].found_in(t):
                return name
        return None

    def question_part(self, text: str) -> str:
        """The message without the greeting, address or polite opening in front ("你好，请问…", "hi there, …"), for the
        FAQ: a greeting weighs in a match as much as the question's own words (a shop question prefixed with
        你好 or hi was answered a third less often)."""
        return self._question(_clean(text), text)

    def _question(self, t: str, text: str) -> str:
        rest = self._lead.sub("", t, count=1).strip()
        return rest if rest != t and _residue(rest) else text

    def is_only(self, name: str, text: str) -> bool:
        """The message is (little more than) a word of list `name`: cancel, yes, no, none_of_these."""
        return _is_only(self._only[name], _clean(text))

    def mentions(self, name: str, text: str) -> bool:
        """The message has a word of `any` list `name` (no_contact, waiting, solved…) anywhere in it."""
        return self._has(name, _clean(text))

    def _has(self, name: str, t: str) -> bool:
        return self._any[name].found_in(self._not[name].strip_from(t))

    def beyond(self, name: str, text: str) -> str:
        """What the message says besides the words of `any` list `name` and fillers; "" when nothing."""
        rest = self._any[name].strip_from(_clean(text))
        return " ".join(rest.split()) if _residue(rest) else ""

    def category(self, text: str) -> str:
        return self._category(_clean(text))

    def _category(self, t: str) -> str:
        for name, words in self._categories.items():
            if words.found_in(t):
                return str(name)
        return "other"


def _word_list(where: str, table: Mapping[str, Any]) -> _WordList:
    lists = [table.get(lang) or [] for lang in ("zh", "en")]
    if not all(isinstance(w, str) for words in lists for w in words):
        raise ValueError(f"intents.yaml: {where}: every word must be text (quote numbers and yes/no)")
    return _WordList(lists[0], lists[1])


def _is_only(words: _WordList, t: str) -> bool:
    """`t` is (little more than) one of `words`."""
    return words.found_in(t) and not _residue(words.strip_from(t))


def _lead_pattern(greetings: _WordList) -> re.Pattern[str]:
    """Greetings, address words and polite openings at the start of a message, with the particles and
    punctuation after them. A one-character word counts only before a pause (亲，… but not 亲子装), an
    English one as a whole word."""
    words = (*greetings.zh, *greetings.en, *_ZH_ADDRESS_WORDS, *_POLITE_OPENINGS)
    chinese = [w for w in words if not w.isascii()]
    latin = sorted({w for w in words if w.isascii()}, key=len, reverse=True)
    long = sorted((re.escape(w) for w in chinese if len(w) > 1), key=len, reverse=True)
    short = [re.escape(w) for w in chinese if len(w) == 1]
    alternatives = [f"(?:{'|'.join(long)})"] if long else []
    if short:
        alternatives.append(f"(?:{'|'.join(short)})(?={_LEAD_SEP})")
    if latin:
        english = "|".join(re.escape(w) for w in latin)
        alternatives.append(rf"(?:{english})(?:\s+(?:{'|'.join(_EN_ADDRESS_WORDS)}))?\b")
    return re.compile(rf"^(?:(?:{'|'.join(alternatives)})[啊呀哦吧呢啦哈嘛了的哟噢喔滴]*{_LEAD_SEP}*)+")


def _clean(text: str) -> str:
    return to_simplified(unicodedata.normalize("NFKC", text)).lower().strip()


def _residue(text: str) -> bool:
    text = _ZH_FILLER.sub(" ", _ZH_ADDRESS.sub(" ", text))
    tokens = [tok for tok in _PUNCT.split(text) if tok and tok not in _EN_FILLER]
    return bool(tokens)


def _shouting(text: str) -> bool:
    """Capitals in a sentence of several words: "AAAA…" (a mashed key, a pasted token) is not shouting."""
    upper = len(_UPPER.findall(text))
    letters = upper + len(_LOWER.findall(text))
    return letters >= 12 and upper / letters > 0.8 and len(set(_WORD.findall(text.lower()))) >= 3
