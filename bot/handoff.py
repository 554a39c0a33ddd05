"""Human handoff: the queue (priority, then arrival), and what agents do with a conversation.

State lives in the conversation log (QUEUED, AGENT_JOINED, …) and in the store's queue, so it survives
restarts and is shared by workers. Claiming is the store's atomic queue_take: exactly one agent wins.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot import conversation as ev
from bot.auth import Agent, get_agent
from bot.clock import Clock
from bot.config import HandoffSettings
from bot.conversation import ConversationState, StateCache, fold
from bot.delivery import Delivery
from bot.intents import CATEGORIES
from bot.locks import KeyedLock
from bot.models import Event, Reply
from bot.normalize import to_traditional
from bot.outbox import Undeliverable
from bot.norms import Violation, check
from bot.privacy import mask, mask_id
from bot.replies import ReplyRenderer
from bot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

CONSOLE_TOPIC = "console"
# Served first: major complaints and messages left outside business hours, then VIPs, then the rest.
PRIORITY_BANDS = {"major": 0, "callback": 0, "vip": 1, "normal": 2}
_BAND = 1e11  # wider than any epoch-seconds timestamp, so the band always dominates arrival time
DEFAULT_HANDLING_MINUTES = 4.0


class HandoffError(Exception):
    """An agent action was refused; `code` is the API error code."""

    def __init__(self, code: str, status: int = 409) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


def rank(priority: str, at: datetime) -> float:
    return PRIORITY_BANDS.get(priority, 2) * _BAND + at.timestamp()


class HandoffDesk:
    def __init__(self, *, store: ConversationStore, clock: Clock, locks: KeyedLock, states: StateCache,
                 settings: HandoffSettings, renderer: ReplyRenderer, delivery: Delivery, default_lang: str) -> None:
        self._store = store
        self._states = states
        self._clock = clock
        self._locks = locks
        self._settings = settings
        self._renderer = renderer
        self._delivery = delivery
        self._default_lang = default_lang
        self._handled: deque[float] = deque(maxlen=50)
        self.on_closed: Callable[[str, ConversationState, list[Event]], Awaitable[None]] | None = None

    # -- the customer side -------------------------------------------------------------------------

    async def position(self, my_rank: float) -> int:
        """1-based place in the queue for a conversation queued at my_rank."""
        return 1 + sum(1 for _, r in await self._store.queue_items() if r < my_rank)

    async def place_of(self, conversation_id: str) -> int | None:
        """1-based place of a queued conversation, None when it is not in the queue."""
        items = await self._store.queue_items()
        return next((i for i, (conv, _) in enumerate(items, start=1) if conv == conversation_id), None)

    def eta_minutes(self, position: int, online_agents: int = 1) -> int:
        per = statistics.median(self._handled) if self._handled else DEFAULT_HANDLING_MINUTES
        return max(1, round(position * per / max(1, online_agents)))

    async def queued(self, conversation_id: str, my_rank: float) -> None:
        """After the engine logged QUEUED: put the conversation in the shared queue and tell consoles."""
        await self._store.queue_put(conversation_id, my_rank)
        await self._publish("queue")

    async def cancelled(self, conversation_id: str) -> None:
        if await self._store.queue_take(conversation_id):
            await self._publish("queue")
            await self._notify_positions()

    # -- the agent side ----------------------------------------------------------------------------

    async def claim(self, conversation_id: str, agent: Agent) -> None:
        if await self._active_count(agent.username) >= agent.max_concurrent:
            raise HandoffError("limit_reached")
        async with self._locks.hold(conversation_id):
            if not await self._store.queue_take(conversation_id):
                raise HandoffError("already_claimed")
            state = await self._state(conversation_id)
            await self._store.record_put("assignment", conversation_id,
                                         {"conversation_id": conversation_id, "agent": agent.username})
            joined = await self._append(conversation_id, ev.AGENT_JOINED, agent=agent.username,
                                        waited_seconds=_seconds_since(state.waiting_since, self._clock.now()))
            told = await self._tell(conversation_id, state, "agent_joined", agent_name=agent.display_name)
        await self._publish("queue")
        await self.publish_events(conversation_id, [joined, told])
        await self._publish("conversation", conversation_id=conversation_id, status="agent", agent=agent.username)
        await self._notify_positions()

    async def reply(self, conversation_id: str, agent: Agent, text: str) -> list[Violation]:
        text = text.strip()
        if not text:
            raise HandoffError("empty_text", 400)
        async with self._locks.hold(conversation_id):
            state = await self._holding(conversation_id, agent)
            lang = state.lang or self._default_lang
            event = await self._append(conversation_id, ev.AGENT_MESSAGE, agent=agent.username, text=text,
                                       display_name=agent.display_name)
            try:
                await self._delivery.send(conversation_id, [Reply(text=text, sender="agent", lang=lang)],
                                          strict=True)
                undelivered = []
            except Undeliverable as exc:  # saved, but the channel will not carry it (WeChat's 48 hours)
                undelivered = [Violation("not_delivered", exc.reason)]
        await self._publish_item(conversation_id, event)
        return undelivered + check(text, lang)

    async def note(self, conversation_id: str, agent: Agent, text: str) -> None:
        if not text.strip():
            raise HandoffError("empty_text", 400)
        async with self._locks.hold(conversation_id):
            event = await self._append(conversation_id, ev.INTERNAL_NOTE, agent=agent.username, text=text.strip())
        await self._publish_item(conversation_id, event)

    async def transfer(self, conversation_id: str, agent: Agent, to_username: str) -> None:
        target = await get_agent(self._store, to_username)
        if target is None or target.disabled:
            raise HandoffError("unknown_agent", 404)
        if await self._active_count(target.username) >= target.max_concurrent:
            raise HandoffError("limit_reached")
        async with self._locks.hold(conversation_id):
            state = await self._holding(conversation_id, agent)
            await self._store.record_put("assignment", conversation_id,
                                         {"conversation_id": conversation_id, "agent": target.username})
            # The event keeps the holder as "from" (the log's shape); console items call it "from_agent".
            moved = await self._append(conversation_id, ev.TRANSFERRED, **{"from": state.agent or agent.username,
                                                                          "to": target.username, "by": agent.username})
            told = await self._tell(conversation_id, state, "transferred", agent_name=target.display_name)
        await self.publish_events(conversation_id, [moved, told])
        await self._publish("conversation", conversation_id=conversation_id, status="agent", agent=target.username,
                            transferred_from=state.agent or agent.username)

    async def release(self, conversation_id: str, agent: Agent) -> None:
        """Hand the conversation back to the bot."""
        async with self._locks.hold(conversation_id):
            state = await self._holding(conversation_id, agent)
            await self._store.record_delete("assignment", conversation_id)
            released = await self._append(conversation_id, ev.RELEASED, agent=agent.username)
            told = await self._tell(conversation_id, state, "released_to_bot")
        self._note_handled(state)
        await self.publish_events(conversation_id, [released, told])
        await self._publish("conversation", conversation_id=conversation_id, status="bot", agent=None)

    async def close(self, conversation_id: str, agent: Agent, *, resolved: bool, category: str | None) -> None:
        if category is not None and category not in CATEGORIES:
            raise HandoffError("bad_category", 400)
        async with self._locks.hold(conversation_id):
            state = await self._holding(conversation_id, agent)
            await self._store.record_delete("assignment", conversation_id)
            told = await self._tell(conversation_id, state, "goodbye")
            closed = await self._append(conversation_id, ev.CLOSED, by=agent.username, resolved=resolved,
                                        category=category, complaint=bool(state.complaints))
        self._note_handled(state)
        if self.on_closed is not None:
            await self.on_closed(conversation_id, state, [closed])
        await self.publish_events(conversation_id, [told, closed])
        await self._publish("conversation", conversation_id=conversation_id, status="closed", agent=None)

    async def typing(self, conversation_id: str, agent: Agent, on: bool) -> None:
        await self._holding(conversation_id, agent)
        await self._delivery_typing(conversation_id, on)

    async def customer_typing(self, conversation_id: str, on: bool) -> None:
        """The customer is typing: consoles watching a queued or agent-held conversation show it.

        A conversation with the bot publishes nothing, so a chatty widget costs a state lookup, not bus traffic.
        """
        state = await self._state(conversation_id)
        if state.status in ("queued", "agent"):
            await self._publish("typing", conversation_id=conversation_id, **{"from": "customer"}, on=on)

    async def holder(self, conversation_id: str) -> str | None:
        """The username of the agent holding the conversation, if one does."""
        state = await self._state(conversation_id)
        return state.agent if state.status == "agent" else None

    # -- views for the console ---------------------------------------------------------------------

    async def queue(self) -> list[dict[str, Any]]:
        items = []
        for position, (conv, _) in enumerate(await self._store.queue_items(), 1):
            state = await self._state(conv)
            events = await self._store.events(conv, after_seq=max(0, state.seq - 10))
            preview = next((e.data.get("text", "") for e in reversed(events) if e.type == ev.CUSTOMER_MESSAGE), "")
            items.append({
                "conversation_id": conv,
                "channel": conv.partition(":")[0],
                "customer": mask_id(conv.partition(":")[2]),
                "priority": state.priority or "normal",
                "reason": state.handoff_reason,
                "waiting_since": state.waiting_since.isoformat() if state.waiting_since else None,
                "position": position,
                "preview": mask(preview[:120]),
            })
        return items

    async def conversations_of(self, agent: Agent) -> list[dict[str, Any]]:
        items = []
        for record in await self._store.records("assignment"):
            if agent.role != "admin" and record["agent"] != agent.username:
                continue
            conv = record["conversation_id"]
            events = await self._store.events(conv)
            state = fold(events)
            last = next((e for e in reversed(events) if e.type in (ev.CUSTOMER_MESSAGE, ev.AGENT_MESSAGE)), None)
            since_agent = [e for e in events if e.type == ev.CUSTOMER_MESSAGE
                           and (state.last_agent_at is None or e.at > state.last_agent_at)]
            items.append({
                "conversation_id": conv,
                "channel": conv.partition(":")[0],
                "customer": mask_id(conv.partition(":")[2]),
                "status": state.status,
                "agent": record["agent"],
                "unread": len(since_agent),
                "last_message": mask(last.data.get("text", ""))[:120] if last else "",
                "last_at": last.at.isoformat() if last else None,
            })
        return items

    async def detail(self, conversation_id: str, agent: Agent, *, notes_private: bool) -> dict[str, Any]:
        events = await self._store.events(conversation_id)
        if not events:
            raise HandoffError("not_found", 404)
        state = fold(events)
        items = [item for e in events if (item := console_item(e)) is not None
                 and not (notes_private and item["type"] == ev.INTERNAL_NOTE and item["agent"] != agent.username
                          and agent.role != "admin")]
        complaints = [{"severity": e.data.get("severity"), "category": e.data.get("category")}
                      for e in events if e.type == ev.COMPLAINT]
        return {
            "conversation_id": conversation_id,
            "channel": conversation_id.partition(":")[0],
            "customer": mask_id(conversation_id.partition(":")[2]),
            "status": state.status,
            "agent": state.agent,
            "classification": {"lang": state.lang, "handoff_reason": state.handoff_reason,
                               "priority": state.priority, "complaints": complaints},
            "events": items,
            "tickets": await self._store.tickets(conversation_id=conversation_id),
        }

    # -- internals ---------------------------------------------------------------------------------

    async def _state(self, conversation_id: str) -> ConversationState:
        return await self._states.get(conversation_id)

    async def _holding(self, conversation_id: str, agent: Agent) -> ConversationState:
        state = await self._state(conversation_id)
        if state.status != "agent" or (state.agent != agent.username and agent.role != "admin"):
            raise HandoffError("not_your_conversation", 403)
        return state

    async def _active_count(self, username: str) -> int:
        return sum(1 for r in await self._store.records("assignment") if r["agent"] == username)

    async def _append(self, conversation_id: str, type_: str, **data: Any) -> Event:
        [event] = await self._store.append(conversation_id,
                                           [Event(conversation_id, type_, self._clock.now(), data)])
        return event

    async def _tell(self, conversation_id: str, state: ConversationState, template: str, **context: Any) -> Event:
        """A system message to the customer, logged as a bot reply so the history shows it."""
        lang = state.lang or self._default_lang
        text = self._renderer.render(template, lang, **context)
        if state.traditional and lang == "zh":
            text = to_traditional(text)
        event = await self._append(conversation_id, ev.BOT_REPLY, text=text, template=template, intent="handoff",
                                   suggestions=[], sender="system")
        await self._delivery.send(conversation_id, [Reply(text=text, sender="system", lang=lang)])
        return event

    async def _notify_positions(self) -> None:
        """Tell every queued customer their new place after the queue moved."""
        for position, (conv, _) in enumerate(await self._store.queue_items(), 1):
            state = await self._state(conv)
            lang = state.lang or self._default_lang
            text = self._renderer.render("queue_update", lang, position=position, eta=self.eta_minutes(position))
            if state.traditional and lang == "zh":
                text = to_traditional(text)
            await self._delivery.send(conv, [Reply(text=text, kind="notice", sender="system", lang=lang)])

    async def _delivery_typing(self, conversation_id: str, on: bool) -> None:
        await self._delivery.send(conversation_id, [Reply(text="on" if on else "off", kind="typing", sender="agent")])

    def _note_handled(self, state: ConversationState) -> None:
        if state.last_agent_at is not None:
            joined = state.last_agent_at
            self._handled.append(max(0.5, (self._clock.now() - joined).total_seconds() / 60))

    async def _publish(self, kind: str, **data: Any) -> None:
        await self._store.publish(CONSOLE_TOPIC, {"kind": kind, **data})

    async def publish_events(self, conversation_id: str, events: list[Event]) -> None:
        """Live items for consoles watching a queued or agent-held conversation."""
        for event in events:
            await self._publish_item(conversation_id, event)

    async def _publish_item(self, conversation_id: str, event: Event) -> None:
        item = console_item(event)
        if item is not None:
            await self._publish("message", conversation_id=conversation_id, item=item)


def console_item(e: Event) -> dict[str, Any] | None:
    """One event as the console shows it: everything an agent needs, the customer's personal data masked.

    Phone, ID and e-mail numbers in customer and bot texts are masked (bot/privacy.py): an agent answers the
    question without them, and a callback uses the contact on the conversation's ticket, the one place it is
    shown whole. Agent replies and internal notes are the agents' own words and are shown as written.
    """
    d = e.data
    base: dict[str, Any] = {"seq": e.seq, "type": e.type, "at": e.at.isoformat()}
    if e.type == ev.CUSTOMER_MESSAGE:
        item = {**base, "from": "customer", "text": mask(d.get("text", "")), "kind": d.get("kind", "text")}
        media = {k: mask(v) if k in ("title", "label") else v for k, v in d.get("media", {}).items()
                 if k not in ("pic_url", "url") or v.startswith(("https://", "http://"))}
        return {**item, "media": media} if media else item
    if e.type == ev.BOT_REPLY:
        return {**base, "from": "bot", "text": mask(d.get("text", "")), "faq_id": d.get("faq_id"),
                "score": d.get("score"), "candidates": d.get("candidates", []), "intent": d.get("intent")}
    if e.type == ev.AGENT_MESSAGE:
        return {**base, "from": "agent", "agent": d.get("agent"), "text": d.get("text", "")}
    if e.type == ev.INTERNAL_NOTE:
        return {**base, "from": "agent", "agent": d.get("agent"), "text": d.get("text", ""), "note": True}
    if e.type in (ev.QUEUED, ev.AGENT_JOINED, ev.TRANSFERRED, ev.RELEASED, ev.CLOSED, ev.HANDOFF_REQUESTED,
                  ev.COMPLAINT, ev.TICKET_CREATED, ev.HANDOFF_CANCELLED, ev.RATING, ev.DELIVERY_FAILED):
        # "from" is the item's sender ("system"); a transfer's previous holder becomes "from_agent".
        data = {k: mask(v) if isinstance(v, str) else v for k, v in d.items() if k not in ("text", "from")}
        if e.type == ev.TRANSFERRED:
            data["from_agent"] = d.get("from")
        return {**base, "from": "system", **data}
    return None


def _seconds_since(since: datetime | None, now: datetime) -> float | None:
    return (now - since).total_seconds() if since else None
