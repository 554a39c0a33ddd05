"""Knowledge-base checks an admin runs before publishing: norms, duplicate and confusable phrasings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.matcher import Matcher
from bot.models import FaqEntry
from bot.normalize import Normalizer
from bot.norms import ANSWER_WARNINGS, check_answer
from bot.replies import ReplyRenderer


@dataclass(frozen=True)
class Finding:
    entry_id: str
    level: str  # "error" blocks publishing, "warning" asks for a look
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.level}: {self.entry_id}: {self.code}: {self.detail}"


def lint(entries: Sequence[FaqEntry], normalizer: Normalizer, matcher: Matcher,
         renderer: ReplyRenderer) -> list[Finding]:
    """Every finding for the given entries, in entry order."""
    findings: list[Finding] = []
    owner: dict[str, str] = {}
    for entry in entries:
        for v in check_answer(entry.answer, entry.lang, close=renderer.answer_close(entry.lang)):
            findings.append(Finding(entry.id, "warning" if v.code in ANSWER_WARNINGS else "error", f"norms.{v.code}",
                                    v.detail))
        for phrasing in entry.phrasings:
            key = normalizer(phrasing)
            other = owner.setdefault(key, entry.id)
            if other != entry.id:
                findings.append(Finding(entry.id, "error", "duplicate_phrasing",
                                        f"{phrasing!r} is also a phrasing of {other}"))
                continue
            top = matcher.rank(phrasing, lang=entry.lang, k=2)
            if top and top[0].entry_id != entry.id and entry.enabled:
                findings.append(Finding(entry.id, "warning", "confusable_phrasing",
                                        f"{phrasing!r} matches {top[0].entry_id} better "
                                        f"({top[0].score:.2f})"))
    return findings
