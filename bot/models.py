"""Plain immutable objects shared by the core, the adapters and the stores (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Decision = Literal["answer", "clarify", "fallback"]
Sender = Literal["customer", "bot", "agent", "system"]


@dataclass(frozen=True)
class FaqEntry:
    """One knowledge-base entry: a standard question, its other phrasings and the shop's answer.

    The answer uses the reply markup: `**key fact**` to highlight, lines starting `1. ` for steps,
    `[label](https://…)` for links. Each channel shapes that markup for its own display.
    """

    id: str
    question: str
    answer: str
    similar: tuple[str, ...] = ()
    category: str = "general"
    lang: str = "zh"
    enabled: bool = True
    tags: tuple[str, ...] = ()
    needs_agent: bool = False

    @property
    def phrasings(self) -> tuple[str, ...]:
        return (self.question, *self.similar)


@dataclass(frozen=True)
class IncomingMessage:
    """What a customer sent, already translated out of the channel's wire format."""

    channel: str
    customer_id: str
    text: str
    timestamp: datetime
    kind: str = "text"
    channel_msg_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suggestion:
    """A clickable choice offered with a reply (a clarification candidate, a rating)."""

    label: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "value": self.value}


@dataclass(frozen=True)
class Reply:
    """One message for the customer, in reply markup; the adapter shapes it for its channel."""

    text: str
    kind: str = "text"
    suggestions: tuple[Suggestion, ...] = ()
    sender: Sender = "bot"
    lang: str = "zh"

    def to_dict(self) -> dict[str, Any]:
        """As dataclasses.asdict would give it, at a fraction of the cost (one per reply sent)."""
        return {"text": self.text, "kind": self.kind, "suggestions": [s.to_dict() for s in self.suggestions],
                "sender": self.sender, "lang": self.lang}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Reply:
        """Back from to_dict (dedup results kept for retries, pushes on the bus)."""
        return cls(text=raw["text"], kind=raw["kind"], sender=raw["sender"], lang=raw["lang"],
                   suggestions=tuple(Suggestion(**s) for s in raw["suggestions"]))


@dataclass(frozen=True)
class Event:
    """One entry of a conversation's append-only log; state and figures are folds over these."""

    conversation_id: str
    type: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
