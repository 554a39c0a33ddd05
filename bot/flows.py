"""The return/exchange request flow (002 §4.2): order number, product, reason, contact, confirm, ticket.

The flow's progress lives in the conversation log as FLOW events, so it survives restarts.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import timedelta
from typing import Any, Protocol

from bot import conversation as ev
from bot.clock import Clock
from bot.handoff import rank
from bot.intents import IntentRules
from bot.models import Suggestion
from bot.normalize import asks, letter_count, word_count
from bot.orders import OrderProvider
from bot.privacy import mask
from bot.replies import ReplyRenderer
from bot.storage.base import ConversationStore

_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d{9})(?!\d)")
# Other numbers, read with spaces and dashes taken out: a country code (+852 9123 4567), a number starting
# with 0 (a landline with its area code, 010-62345678; a Taiwan mobile, 0912-345-678), a Hong Kong mobile.
_OTHER_PHONE = re.compile(r"(?<![\d+])(\+[1-9]\d{7,15}|0\d{9,11}|[569]\d{7})(?!\d)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
TICKET_DUE = timedelta(hours=24)  # every service request answered within 24 hours (seed 000/001)
MAX_FIELD_CHARS = 200
CONTACT_WORDS_AROUND = 20  # "我的手机号是13812345678，麻烦查好了告诉我": a contact, not a new question
_NUMBER_RUN = re.compile(r"\+?\d[\d\s-]{6,}\d")
PROBLEM_MIN_CHARS = 5  # written where a contact was asked, this much text is the customer's problem ("明天再说" is not)
# Order states with nothing to send back: not paid, not shipped yet (cancelled instead), cancelled, refunded.
NOTHING_TO_RETURN = ("pending_payment", "paid", "cancelled", "refunding", "refunded")


class Speaker(Protocol):
    lang: str

    @property
    def turn(self) -> Any: ...

    def render(self, name: str, **context: Any) -> str: ...

    def say(self, template: str, *, suggestions: list[Suggestion] | None = None, opening: bool = True,
            context: dict[str, Any] | None = None, **data: Any) -> None: ...


class ReturnFlow:
    def __init__(self, order_re: re.Pattern[str], rules: IntentRules, orders: OrderProvider,
                 store: ConversationStore, renderer: ReplyRenderer, clock: Clock) -> None:
        self._order_re = order_re
        self._rules = rules
        self._orders = orders
        self._store = store
        self._renderer = renderer
        self._clock = clock

    async def start(self, text: str, out: Speaker) -> None:
        flow: dict[str, Any] = {"name": "return", "step": "order", "data": {}}
        match = self._order_re.search(text)
        if match:
            await self._take_order(flow, match.group(1).upper(), out)
            return
        self._ask(flow, "return_ask_order", out)

    async def step(self, flow: dict[str, Any], text: str, out: Speaker) -> None:
        if self._rules.is_only("cancel", text):
            out.turn.record(ev.FLOW, state=None)
            out.say("return_cancelled", intent="return_flow")
            return
        flow = {**flow, "data": dict(flow["data"])}
        step = flow["step"]
        value = text.strip()[:MAX_FIELD_CHARS]
        if step == "order":
            match = self._order_re.search(text)
            if not match:
                self._ask(flow, "return_invalid_order", out)
                return
            await self._take_order(flow, match.group(1).upper(), out)
        elif step == "product":
            items = flow["data"].get("items", [])
            number = unicodedata.normalize("NFKC", value).rstrip(".、")
            # "1" picks the order's first item (WeChat lists them as lines to answer with their number).
            picked = number.isdigit() and 0 < int(number) <= len(items)
            flow["data"]["product"] = items[int(number) - 1] if picked else value
            self._ask({**flow, "step": "reason"}, "return_ask_reason", out)
        elif step == "reason":
            quality = self._rules.category(value) == "product_quality"
            flow["data"].update(reason=value, quality=quality)
            self._ask({**flow, "step": "contact"}, "return_ask_contact", out, quality=quality)
        elif step == "contact":
            contact = contact_in(text)
            if contact is None:
                # Declining gets why a return needs one (the courier's pickup, the refund check), not "incomplete".
                self._ask(flow, "return_invalid_contact", out, declined=self._rules.mentions("no_contact", text))
                return
            flow["data"]["contact"] = contact
            self._confirm({**flow, "step": "confirm"}, out)
        elif step == "confirm":
            if self._rules.is_only("yes", text):
                await self._submit(flow, out)
            elif self._rules.is_only("no", text):
                self._ask({"name": "return", "step": "order", "data": {}}, "return_ask_order", out)
            else:
                self._confirm(flow, out)

    async def _take_order(self, flow: dict[str, Any], order_no: str, out: Speaker) -> None:
        """Go on with an order the shop has and that has something to return; else say why not."""
        order = await self._orders.find(order_no)
        if order is None:
            self._ask({**flow, "step": "order"}, "return_order_not_found", out, order_no=order_no)
            return
        if order.status in NOTHING_TO_RETURN:
            out.turn.record(ev.FLOW, state=None)
            out.say("return_nothing_to_return", intent="return_flow", order_no=order_no, status=order.status)
            return
        flow = {**flow, "step": "product", "data": {**flow["data"], "order_no": order_no, "items": list(order.items)}}
        self._ask_product(flow, out)

    def _ask_product(self, flow: dict[str, Any], out: Speaker) -> None:
        items = flow["data"].get("items", [])
        self._ask(flow, "return_ask_product", out, items=items, suggestions=[Suggestion(i, i) for i in items])

    def reprompt(self, flow: dict[str, Any], out: Speaker) -> None:
        """Ask again for what the current step needs (after answering a question asked in between)."""
        step = flow["step"]
        if step == "product":
            self._ask_product(flow, out)
        elif step == "confirm":
            self._confirm(flow, out)
        else:
            template = {"order": "return_ask_order", "reason": "return_ask_reason"}.get(step, "return_ask_contact")
            self._ask(flow, template, out, quality=bool(flow["data"].get("quality")))

    def _ask(self, flow: dict[str, Any], template: str, out: Speaker,
             suggestions: list[Suggestion] | None = None, **context: Any) -> None:
        out.turn.record(ev.FLOW, state=flow)
        out.say(template, intent="return_flow", suggestions=suggestions, context=context)

    def _confirm(self, flow: dict[str, Any], out: Speaker) -> None:
        d = flow["data"]
        buttons = [Suggestion(out.render(n), self._renderer.render(n, out.lang))
                   for n in ("label_confirm", "label_change")]
        self._ask(flow, "return_confirm", out, suggestions=buttons, order_no=d["order_no"],
                  product=d["product"], reason=d["reason"], contact=mask(d["contact"]))

    async def _submit(self, flow: dict[str, Any], out: Speaker) -> None:
        d = flow["data"]
        ticket_id = await open_ticket(self._store, self._clock, out, "return", **d)
        out.turn.record(ev.FLOW, state=None)
        out.say("return_done", intent="return_flow", ticket_id=ticket_id, quality=bool(d.get("quality")))


class LeaveMessageFlow:
    """Outside business hours: take a contact and the question, promise an answer within 24 hours, and
    put the conversation first in the queue for opening time."""

    def __init__(self, rules: IntentRules, store: ConversationStore, clock: Clock) -> None:
        self._rules = rules
        self._store = store
        self._clock = clock

    def start(self, out: Speaker, *, reason: str, hours: str) -> None:
        out.turn.record(ev.FLOW, state={"name": "leave_message", "step": "contact",
                                        "data": {"reason": reason, "hours": hours}})
        out.say("leave_message_ask_contact", intent="leave_message", hours=hours)

    def note_major(self, flow: dict[str, Any], out: Speaker) -> dict[str, Any]:
        """A safety incident reported while the message is being left: the message will go first in the queue."""
        flow = {**flow, "data": {**flow["data"], "major": True}}
        out.turn.record(ev.FLOW, state=flow)
        return flow

    async def step(self, flow: dict[str, Any], text: str, out: Speaker) -> float | None:
        """Advance the flow; the queue rank once the message is left (the caller queues it), else None.

        A customer who writes their problem where a contact was asked keeps it (it becomes the message), and
        one who will not leave a contact leaves the message without one: the shop answers in the chat."""
        if self._rules.is_only("cancel", text):
            out.turn.record(ev.FLOW, state=None)
            out.say("handoff_cancelled", intent="leave_message")
            return None
        data = dict(flow["data"])
        if self._rules.read(text).wants_human or self._rules.mentions("waiting", text):
            # "人工", "还要等多久" at night: when people are back, then what the step still needs.
            out.say("leave_message_later", intent="leave_message", hours=data.get("hours", ""), ask=flow["step"])
            return None
        if flow["step"] == "contact":
            contact = contact_in(text)
            if contact is not None:
                data["contact"] = contact
                if not data.get("message") and letter_count(_without_contact(text)) >= PROBLEM_MIN_CHARS:
                    data["message"] = _message(text)  # "13812345678 冰箱不制冷了，麻烦明天联系我"
                if data.get("message"):
                    return await self._leave(data, out)
                out.turn.record(ev.FLOW, state={**flow, "step": "message", "data": data})
                out.say("leave_message_ask_text", intent="leave_message")
                return None
            if self._rules.mentions("no_contact", text) or self._rules.is_only("no", text):
                if data.get("message"):
                    return await self._leave(data, out)
                out.turn.record(ev.FLOW, state={**flow, "step": "message", "data": data})
                out.say("leave_message_ask_text", intent="leave_message")
                return None
            if not data.get("message") and letter_count(text) >= PROBLEM_MIN_CHARS:
                data["message"] = _message(text)  # the problem, written first: noted, and the contact asked again
                out.turn.record(ev.FLOW, state={**flow, "data": data})
                out.say("leave_message_noted", intent="leave_message")
                return None
            out.say("leave_message_invalid_contact", intent="leave_message")
            return None
        return await self._leave({**data, "message": _message(text)}, out)

    async def _leave(self, data: dict[str, Any], out: Speaker) -> float:
        ticket_id = await open_ticket(self._store, self._clock, out, "leave_message", **{"contact": None, **data})
        priority = "major" if data.get("major") else "callback"  # a safety incident reported meanwhile goes first
        my_rank = rank(priority, self._clock.now())
        out.turn.record(ev.FLOW, state=None)
        out.turn.record(ev.QUEUED, priority=priority, reason=data.get("reason"), rank=my_rank)
        out.say("leave_message_done", intent="leave_message", ticket_id=ticket_id, contact=bool(data.get("contact")))
        return my_rank


_TICKET_PREFIX = {"return": "RT", "leave_message": "LM", "question": "Q"}


async def open_ticket(store: ConversationStore, clock: Clock, out: Speaker, kind: str, **fields: Any) -> str:
    """Store a service ticket due in 24 hours and log it in the turn; its id, which the customer is given."""
    now = clock.now()
    ticket_id = f"{_TICKET_PREFIX[kind]}{now:%Y%m%d}{secrets.token_hex(3).upper()}"
    due_at = (now + TICKET_DUE).isoformat()
    await store.put_ticket({"id": ticket_id, "kind": kind, "conversation_id": out.turn.conversation_id,
                            "status": "open", "created_at": now.isoformat(), "due_at": due_at, **fields})
    out.turn.record(ev.TICKET_CREATED, ticket_id=ticket_id, kind=kind, due_at=due_at)
    return ticket_id


def left_contact(text: str) -> str | None:
    """The phone number or e-mail address a message consists of (a few words around it allowed), else None."""
    contact = contact_in(text)
    if contact is None or asks(text):  # "发票能发到我邮箱 a@b.cn 吗" asks something new
        return None
    return contact if word_count(_without_contact(text)) <= CONTACT_WORDS_AROUND else None


def _without_contact(text: str) -> str:
    return _NUMBER_RUN.sub(" ", _EMAIL.sub(" ", text))


def _message(text: str) -> str:
    return text.strip()[:MAX_FIELD_CHARS * 5]


def contact_in(text: str) -> str | None:
    phone = _PHONE.search(text.replace(" ", "").replace("-", ""))
    if phone:
        return phone.group(1)
    email = _EMAIL.search(text)
    if email:
        return email.group(0)
    other = _OTHER_PHONE.search(text.replace(" ", "").replace("-", ""))
    return other.group(1) if other else None
