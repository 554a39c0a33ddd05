"""Questions the bot could not answer (fallbacks) or was unsure of (clarifications), grouped by similarity,
so an admin turns a frequent miss into an FAQ phrasing in one step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot import conversation as ev
from bot.models import Event
from bot.privacy import mask

SIMILAR = 0.5  # character-bigram overlap above which two questions are the same question


def misses(logs: Mapping[str, Sequence[Event]], since: datetime) -> list[tuple[str, str, datetime]]:
    """(customer text, decision, time) for every fallback or clarification since `since`."""
    out = []
    for events in logs.values():
        last_text: Event | None = None
        for e in events:
            if e.type == ev.CUSTOMER_MESSAGE:
                last_text = e
            elif e.type == ev.BOT_REPLY and e.data.get("decision") in ("fallback", "clarify") and last_text:
                if e.at >= since and last_text.data.get("text"):
                    out.append((last_text.data["text"], e.data["decision"], e.at))
                last_text = None
    return out


def group(items: Sequence[tuple[str, str, datetime]], normalize: Callable[[str], str],
          suggest: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """Greedy single-pass grouping, largest groups first; examples masked for display."""
    groups: list[dict[str, Any]] = []
    for text, decision, at in items:
        grams = _bigrams(normalize(text))
        if not grams:
            continue
        home = next((g for g in groups if _overlap(grams, g["_grams"]) >= SIMILAR), None)
        if home is None:
            home = {"_grams": grams, "count": 0, "examples": [], "decisions": {}, "last_at": at, "_first": text}
            groups.append(home)
        home["count"] += 1
        home["decisions"][decision] = home["decisions"].get(decision, 0) + 1
        home["last_at"] = max(home["last_at"], at)
        if len(home["examples"]) < 5 and mask(text) not in home["examples"]:
            home["examples"].append(mask(text))
    groups.sort(key=lambda g: (-g["count"], g["_first"]))
    return [{"count": g["count"], "examples": g["examples"],
             "decision": max(g["decisions"], key=g["decisions"].get), "suggested_id": suggest(g["_first"]),
             "last_at": g["last_at"].isoformat()} for g in groups]


def _bigrams(text: str) -> set[str]:
    compact = text.replace(" ", "")
    return {compact[i:i + 2] for i in range(len(compact) - 1)} or ({compact} if compact else set())


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / min(len(a), len(b))
