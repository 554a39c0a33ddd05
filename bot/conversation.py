"""A conversation's current state as a fold over its event log (architecture.md: the log is the truth)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.models import Event
from bot.storage.base import ConversationStore

# Event types. Adding one means teaching `apply` (and the figures) about it.
CUSTOMER_MESSAGE = "customer_message"
BOT_REPLY = "bot_reply"
AGENT_MESSAGE = "agent_message"
HANDOFF_REQUESTED = "handoff_requested"
COMPLAINT = "complaint"
EMOTION = "emotion"
FLOW = "flow"
TICKET_CREATED = "ticket_created"
QUEUED = "queued"
HANDOFF_CANCELLED = "handoff_cancelled"
AGENT_JOINED = "agent_joined"
INTERNAL_NOTE = "internal_note"
TRANSFERRED = "transferred"
RELEASED = "released"
CLOSED = "closed"
RATING = "rating"
VISIT_RESULT = "visit_result"
FOLLOWUP_SENT = "followup_sent"
FOLLOWUP_SCHEDULED = "followup_scheduled"
DELIVERY_FAILED = "delivery_failed"  # a reply the channel could not get to the customer, for the agents
FOLLOWUP_ENDED = (FOLLOWUP_SENT, "followup_cancelled", "followup_skipped", "followup_failed", "followup_missed")


def conversation_id(channel: str, customer_id: str) -> str:
    return f"{channel}:{customer_id}"


@dataclass(frozen=True)
class ConversationState:
    seq: int = 0
    status: str = "bot"
    lang: str | None = None
    traditional: bool = False
    greeted: bool = False
    pending_choices: tuple[str, ...] = ()
    fallback_streak: int = 0
    clarify_declines: int = 0
    flow: dict[str, Any] | None = None
    last_customer_at: datetime | None = None
    episode_messages: int = 0
    handoff_requests: int = 0
    complaints: tuple[str, ...] = field(default_factory=tuple)
    agent: str | None = None
    priority: str | None = None
    handoff_reason: str | None = None
    waiting_since: datetime | None = None
    last_agent_at: datetime | None = None
    awaiting: str | None = None  # a sent survey or follow-up visit the customer may answer
    wait_acknowledged: bool = False  # a message written while queued was acknowledged (once per wait)
    # (job id, kind) of follow-ups the log says were scheduled and not yet ended: when none of a kind is
    # here, a customer's message need not look for one to cancel. An ending the log does not record only
    # leaves an entry behind, which costs a lookup, never a missed cancellation.
    followups: tuple[tuple[str, str], ...] = ()


def fold(events: Iterable[Event], state: ConversationState | None = None) -> ConversationState:
    """Apply events in order to `state` (a fresh one when None); the state is built once, not per event."""
    s = state or ConversationState()
    fields: dict[str, Any] | None = None
    for event in events:
        if fields is None:
            fields = dict(vars(s))
        _apply(fields, event)
    return s if fields is None else ConversationState(**fields)


def _apply(s: dict[str, Any], e: Event) -> None:
    d = e.data
    s["seq"] = e.seq
    if e.type == CUSTOMER_MESSAGE:
        waiting = s["waiting_since"]
        if s["status"] == "agent" and (waiting is None or (s["last_agent_at"] and waiting < s["last_agent_at"])):
            waiting = e.at  # the customer now waits for the agent's answer
        s.update(
            lang=d.get("lang") or s["lang"],
            traditional=d.get("traditional", s["traditional"]),
            last_customer_at=e.at,
            episode_messages=s["episode_messages"] + 1,
            status="bot" if s["status"] == "closed" else s["status"],
            waiting_since=waiting,
            awaiting=None,  # the engine read it from the state before this message
        )
    elif e.type == BOT_REPLY:
        decision = d.get("decision")
        s.update(
            greeted=True,
            pending_choices=tuple(d.get("choices", ())),
            fallback_streak=s["fallback_streak"] + 1 if decision == "fallback" else 0,
            clarify_declines=s["clarify_declines"] + (1 if d.get("intent") == "clarify_declined" else 0),
            wait_acknowledged=s["wait_acknowledged"] or d.get("intent") == "waiting",
        )
    elif e.type == HANDOFF_REQUESTED:
        s.update(handoff_requests=s["handoff_requests"] + 1, handoff_reason=d.get("reason"))
    elif e.type == QUEUED:
        # Moved up the queue while waiting (a safety incident), the customer has waited since they first queued.
        since = s["waiting_since"] if s["status"] == "queued" and s["waiting_since"] else e.at
        s.update(status="queued", priority=d.get("priority"), waiting_since=since, flow=None, pending_choices=(),
                 wait_acknowledged=False)
    elif e.type == HANDOFF_CANCELLED:
        s.update(status="bot", waiting_since=None)
    elif e.type == AGENT_JOINED:
        s.update(status="agent", agent=d.get("agent"), last_agent_at=e.at)
    elif e.type == TRANSFERRED:
        s["agent"] = d.get("to")
    elif e.type == AGENT_MESSAGE:
        s.update(last_agent_at=e.at, waiting_since=None)
    elif e.type == RELEASED:
        s.update(status="bot", agent=None, waiting_since=None, fallback_streak=0, clarify_declines=0)
    elif e.type == COMPLAINT:
        s["complaints"] = (*s["complaints"], d.get("severity", "general"))
    elif e.type == FLOW:
        s["flow"] = d.get("state")
    elif e.type == FOLLOWUP_SCHEDULED:
        s["followups"] = (*s["followups"], (str(d.get("job_id")), str(d.get("kind"))))
    elif e.type in FOLLOWUP_ENDED:
        s["followups"] = tuple(f for f in s["followups"] if f[0] != d.get("job_id"))
        if e.type == FOLLOWUP_SENT and d.get("kind") in ("survey", "complaint_visit"):
            s["awaiting"] = d["kind"]
    elif e.type in (RATING, VISIT_RESULT):
        s["awaiting"] = None
    elif e.type == CLOSED:
        kept = {k: s[k] for k in ("lang", "traditional", "last_customer_at", "followups")}
        s.update(vars(ConversationState(seq=e.seq, status="closed", **kept)))


class StateCache:
    """Conversation states folded incrementally: only events newer than the cached state are read.

    The store stays the truth (another worker may have appended), so every get() asks it for newer events.
    """

    def __init__(self, store: ConversationStore, *, size: int = 10_000) -> None:
        self._store = store
        self._size = size
        self._states: OrderedDict[str, ConversationState] = OrderedDict()

    async def get(self, conversation_id: str) -> ConversationState:
        cached = self._states.get(conversation_id)
        newer = await self._store.events(conversation_id, after_seq=cached.seq if cached else 0)
        state = fold(newer, cached)
        self.put(conversation_id, state)
        return state

    def put(self, conversation_id: str, state: ConversationState) -> None:
        self._states[conversation_id] = state
        self._states.move_to_end(conversation_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)
