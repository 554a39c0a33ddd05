"""The per-message decision: rule intents, then the FAQ; every turn appended to the conversation log.

Plain Python: no aiohttp, no concrete store. One message at a time per conversation (a keyed lock), and a
message carrying a channel message id is processed once: a retry gets the stored replies back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from bot import conversation as ev
from bot import jsoncodec
from bot.clock import Clock
from bot.config import HandoffSettings, ShopSettings, parse_hours
from bot.conversation import ConversationState, StateCache, conversation_id, fold
from bot.customer_text import clean_text, language_of, leans_back, picked, question_parts, quoted, says_anything
from bot.delivery import has_buttons
from bot.flows import LeaveMessageFlow, ReturnFlow, left_contact, open_ticket
from bot.followups import Followups, parse_rating, scheduled
from bot.handoff import HandoffDesk, rank
from bot.intents import IntentRules
from bot.locks import KeyedLock
from bot.matcher import Matcher, MatchResult
from bot.models import Event, FaqEntry, IncomingMessage, Reply, Suggestion
from bot.normalize import Normalizer, asks, to_simplified, to_traditional, word_count, written_traditional
from bot.orders import OrderProvider
from bot.replies import ReplyRenderer
from bot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

DEDUP_WAIT = 4.0  # seconds a repeat waits for the first delivery's replies (WeChat gives up after 5)
DEDUP_POLL = 0.05
MAX_ORDERS = 3  # order numbers looked up from one message
UPSET_REASONS = ("agitated", "complaint", "major_complaint")  # handoffs a customer's "算了" does not take back
# What is asked beside an order number is answered only on a sure match: the status already answers something,
# and a loose match there answered "冰箱送来就是坏的" with the fridge's temperature settings.
ORDER_QUESTION_SCORE = 0.7
MAX_PARTS = 3  # questions answered from one message
FOLLOW_UP_WORDS = 12  # a message this short right after an FAQ reply may lean on it ("那要多久？")
FOLLOW_UP_WITHIN = timedelta(minutes=10)

@dataclass
class Turn:
    """What one incoming message produced: log events and replies, written together."""

    conversation_id: str
    clock: Clock
    events: list[Event] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    queue_rank: float | None = None
    handoff_cancelled: bool = False

    def record(self, type_: str, **data: Any) -> None:
        self.events.append(Event(self.conversation_id, type_, self.clock.now(), data))

    def say(self, reply: Reply, **data: Any) -> None:
        self.replies.append(reply)
        self.record(
            ev.BOT_REPLY,
            text=reply.text,
            suggestions=[s.to_dict() for s in reply.suggestions],
            **data,
        )


# What a picture, link or location message carries that an agent needs to see (channels put it in meta), and the
# context of what the bot does not act on: a follow's QR-code scene, an unknown message type, an unmapped menu key.
MEDIA_FIELDS = ("media_id", "pic_url", "url", "title", "label", "latitude", "longitude",
                "scene", "msg_type", "event_key")


@dataclass(frozen=True)
class Outcome:
    replies: list[Reply]
    duplicate: bool


class ConversationEngine:
    def __init__(
        self,
        *,
        shop: ShopSettings,
        handoff: HandoffSettings,
        store: ConversationStore,
        matcher: Matcher,
        normalizer: Normalizer,
        entries: Mapping[str, FaqEntry],
        renderer: ReplyRenderer,
        rules: IntentRules,
        orders: OrderProvider,
        clock: Clock,
        desk: HandoffDesk,
        followups: Followups,
        locks: KeyedLock,
        states: StateCache,
        dedup_ttl_seconds: float = 86400,
    ) -> None:
        self._shop = shop
        self._handoff = handoff
        self._store = store
        self.matcher = matcher
        self.normalizer = normalizer
        self._entries = dict(entries)
        self.renderer = renderer
        self._rules = rules
        self._orders = orders
        self.clock = clock
        self._dedup_ttl = dedup_ttl_seconds
        self._running: dict[str, asyncio.Future[list[Reply] | None]] = {}  # this worker's deliveries at work
        self._locks = locks
        self.desk = desk
        self.followups = followups
        self._open_hours = parse_hours("shop.business_hours", shop.business_hours)
        self._states = states
        self._order_re = re.compile(rf"(?<![0-9A-Za-z])({shop.order_number_pattern})(?![0-9A-Za-z])", re.I)
        self._flow = ReturnFlow(self._order_re, rules, orders, store, renderer, clock)
        self._leave_message = LeaveMessageFlow(rules, store, clock)

    # -- knowledge base -------------------------------------------------------------------------

    def entry(self, entry_id: str) -> FaqEntry | None:
        return self._entries.get(entry_id)

    def entries(self) -> list[FaqEntry]:
        return list(self._entries.values())

    def upsert_entry(self, entry: FaqEntry) -> None:
        """Take an edited entry into effect at once (matcher updated incrementally)."""
        self._entries[entry.id] = entry
        if entry.enabled:
            self.matcher.upsert(entry)
        else:
            self.matcher.remove(entry.id)

    def remove_entry(self, entry_id: str) -> None:
        self._entries.pop(entry_id, None)
        self.matcher.remove(entry_id)

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, msg: IncomingMessage) -> list[Reply]:
        """Replies to one customer message; a repeated channel message id gets the first replies again."""
        return (await self.receive(msg)).replies

    async def receive(self, msg: IncomingMessage) -> Outcome:
        """Like handle, and says whether the message was a repeat already processed.

        A message with a channel id is claimed in the store first, so a retry that reaches another worker
        while the first is still working waits for (or, after `DEDUP_WAIT`, reports) that first result
        instead of processing the message twice. A retry that reaches the worker still running the first
        delivery waits for it however long it takes: its owner is alive, so nothing is taken over."""
        conv = conversation_id(msg.channel, msg.customer_id)
        if not msg.channel_msg_id:
            return await self._receive(msg, conv, None)
        dedup_key = f"dedup:{conv}:{msg.channel_msg_id}"
        while (running := self._running.get(dedup_key)) is not None:
            first = await asyncio.shield(running)
            if first is not None:
                return Outcome(first, duplicate=True)
            # The first delivery failed and released its claim: the next one in line processes the message.
        done = self._running[dedup_key] = asyncio.get_running_loop().create_future()
        replies: list[Reply] | None = None
        try:
            outcome = await self._receive(msg, conv, dedup_key)
            replies = outcome.replies
            return outcome
        finally:
            del self._running[dedup_key]
            done.set_result(replies)

    async def _receive(self, msg: IncomingMessage, conv: str, dedup_key: str | None) -> Outcome:
        async with self._store.batch():  # one commit for the whole turn, before anyone hears of it
            if dedup_key and (earlier := await self._processed_before(conv, dedup_key, msg.channel_msg_id)):
                return earlier
            try:
                async with self._locks.hold(conv) as lease:
                    state = await self._states.get(conv)
                    turn = Turn(conv, self.clock)
                    await self._respond(state, msg, turn)
                    # The jobs the turn starts are stored and logged with it: whoever reads the turn can cancel them.
                    jobs = self.followups.plan(conv, fold(turn.events, state), turn.events)
                    for job in jobs:
                        turn.record(ev.FOLLOWUP_SCHEDULED, **scheduled(job))
                    # The turn's last write: the replies kept for the channel's retries, the jobs and the lease
                    # let go ride along with the message.
                    remember = (dedup_key, encode_replies(turn.replies), self._dedup_ttl) if dedup_key else None
                    stored = await self._store.append(conv, turn.events, remember=remember, jobs=jobs,
                                                      release=(lease.name, lease.token) if lease else None)
                    if lease is not None and stored:
                        lease.released = True
                    if stored and stored[0].seq != state.seq + 1:
                        # Another worker wrote in between: fold its events in too, never skip them.
                        after = await self._states.get(conv)
                    else:
                        after = fold(stored, state)
                        self._states.put(conv, after)
            except BaseException:
                if dedup_key and self._store.shared:  # nothing was stored: let the channel's retry process it
                    await self._store.cache_delete(f"claim:{dedup_key}")
                raise
            await self.followups.react(conv, state, after, stored, started=jobs)
        if turn.queue_rank is not None:
            await self.desk.queued(conv, turn.queue_rank)
        if turn.handoff_cancelled:
            await self.desk.cancelled(conv)
        if after.status in ("queued", "agent") or state.status in ("queued", "agent"):
            await self.desk.publish_events(conv, stored)
        return Outcome(turn.replies, duplicate=False)

    async def _processed_before(self, conv: str, dedup_key: str, msg_id: str | None) -> Outcome | None:
        """The first delivery's outcome when this message is a repeat; None when this call processes it.

        A store of this process alone needs no claim: `receive` already makes a retry wait for the delivery
        still running here, and a finished one left its replies with the message, in the same write."""
        if not self._store.shared:
            cached = await self._store.cache_get(dedup_key)
            return None if cached is None else Outcome(decode_replies(cached), duplicate=True)
        if await self._store.cache_add(f"claim:{dedup_key}", "1", self._dedup_ttl):
            return None
        return await self._earlier_result(conv, dedup_key, msg_id)

    async def _earlier_result(self, conv: str, dedup_key: str, msg_id: str | None) -> Outcome | None:
        """The first delivery's result; None when its worker died between claiming and storing the message
        (a kill -9, or a store lost in between): then this call takes the message over, once."""
        waited = 0.0
        while waited < DEDUP_WAIT:
            cached = await self._store.cache_get(dedup_key)
            if cached is not None:
                return Outcome(decode_replies(cached), duplicate=True)
            await asyncio.sleep(DEDUP_POLL)
            waited += DEDUP_POLL
        # Stored, but its kept replies are gone (evicted by Redis under memory pressure, or stored by a version
        # that kept them in a separate write): a repeat, nothing lost.
        if any(e.type == ev.CUSTOMER_MESSAGE and e.data.get("channel_msg_id") == msg_id
               for e in await self._store.events(conv)):
            return Outcome([], duplicate=True)
        # Never stored, and no worker has finished it in DEDUP_WAIT: one retry (of possibly several racing)
        # takes it over; the others report a repeat.
        if await self._store.cache_add(f"takeover:{dedup_key}", "1", self._dedup_ttl):
            logger.warning("message %s was claimed but never stored: taking it over", dedup_key)
            return None
        return Outcome([], duplicate=True)

    async def record_undelivered(self, channel: str, customer_id: str, **data: Any) -> None:
        """Note in the conversation that replies never reached the customer (the channel gave up), so an
        agent reading it knows the customer did not see them."""
        conv = conversation_id(channel, customer_id)
        async with self._locks.hold(conv):
            stored = await self._store.append(conv, [Event(conv, ev.DELIVERY_FAILED, self.clock.now(), data)])
        await self.desk.publish_events(conv, stored)

    async def state(self, channel: str, customer_id: str) -> ConversationState:
        return await self._states.get(conversation_id(channel, customer_id))

    async def transcript(self, channel: str, customer_id: str) -> list[dict[str, Any]]:
        """The conversation as the customer saw it: their messages and the replies they got."""
        events = await self._store.events(conversation_id(channel, customer_id))
        return [item for e in events if (item := transcript_item(e)) is not None]

    async def _respond(self, state: ConversationState, msg: IncomingMessage, turn: Turn) -> None:
        text = clean_text(msg.text)
        # A form keeps its language: the answers to it (a product name, an address) are not a switch.
        lang = (state.lang if state.flow is not None else None) or language_of(text, state.lang) or state.lang or \
            self._shop.default_lang
        script = written_traditional(text)
        traditional = state.traditional if script is None else script
        media = {k: v for k, v in msg.meta.items() if k in MEDIA_FIELDS and isinstance(v, str) and v}
        turn.record(
            ev.CUSTOMER_MESSAGE,
            text=text,
            kind=msg.kind,
            channel_msg_id=msg.channel_msg_id,
            lang=lang,
            traditional=traditional,
            **({"media": media} if media else {}),
        )
        out = _Speaker(self, state, turn, lang, traditional)
        if msg.kind == "subscribe":
            welcome = [e for i in self._shop.welcome_questions if (e := self._entries.get(i)) and e.lang == lang]
            out.say("welcome", intent="subscribe", opening=False, choices=[e.id for e in welcome],
                    shop_name=self._shop.display_name(lang), context={"questions": [e.question for e in welcome]})
            return
        if msg.kind == "unsubscribe":
            turn.record("unsubscribed")
            if state.status == "queued":  # nobody can reach them any more: off the queue, not claimed in vain
                turn.record(ev.HANDOFF_CANCELLED, reason="unsubscribed")
                turn.handoff_cancelled = True
            return
        if state.status == "queued":
            await self._while_queued(state, text if msg.kind == "text" else "", out)
            return
        if state.status == "agent":
            return
        if msg.kind == "menu" and msg.meta.get("faq_id") in self._entries:
            await self._give_answer(state, msg, msg.meta["faq_id"], out)
            return
        if msg.kind != "text":
            out.say("media_received", intent="media", kind=msg.kind)
            return
        if not text:
            out.say("empty", intent="empty")
            return
        if state.awaiting and await self._answer_followup(state, msg, text, out):
            return
        if not says_anything(text):
            if self._rules.small_talk(text) == "thanks":  # 👍, 🙏
                out.say("thanks", intent="thanks")
            else:
                self._unclear(state, out)
            return
        if state.flow is not None and state.flow.get("name") == "leave_message":
            flow = self._leave_message.note_major(state.flow, out) if self._report_major(text, out) else state.flow
            rank_ = await self._leave_message.step(flow, text, out)
            if rank_ is not None:
                turn.queue_rank = rank_
            return
        reading = self._rules.read(text)
        if state.flow is not None:
            if not (reading.wants_human or reading.complaint):
                await self._return_step(state, msg, text, reading.question, lang, out)
                return
            turn.record(ev.FLOW, state=None)  # a person or a complaint comes first: the form is left
        if state.fallback_streak and state.flow is None and (contact := left_contact(text)):
            await self._note_question(turn.conversation_id, contact, out)
            return
        if state.pending_choices and await self._answer_pick(state, msg, text, out):
            return
        if reading.complaint is not None:
            c = reading.complaint
            turn.record(ev.COMPLAINT, severity=c.severity, category=c.category, text=text)
            major = c.severity == "major"
            template, reason = ("complaint_major", "major_complaint") if major else ("complaint", "complaint")
            # What the reply promises depends on what happens next: a person now, after opening time (the
            # night's leave-a-message asks for the contact itself), or an answer within 24 hours.
            when = "later" if reason not in self._handoff.triggers else "now" if self._open_now() else "opening"
            out.say(template, intent=template, category=c.category, when=when, hours=self._shop.business_hours)
            await self._hand_over(state, msg, out, reason, priority="major" if major else None)
            return
        if reading.wants_human:
            if not await self._hand_over(state, msg, out, "customer_asked"):
                out.say("handoff_requested", intent="human")
            return
        if reading.agitated:
            turn.record(ev.EMOTION, emotion="agitated", text=text)
            # The norms: calm the customer, then steer to the concrete problem. One the FAQ answers outright is
            # answered; anything else goes to a person.
            result = await self._match(reading.question, lang)
            sure = result.decision == "answer"
            out.say("agitated", intent="agitated", answering=sure)
            if sure:
                await self._give_answer(state, msg, result.candidates[0].entry_id, out, result)
            else:
                await self._hand_over(state, msg, out, "agitated")
            return
        if reading.return_request:
            await self._flow.start(text, out)
            return
        order_numbers = list(dict.fromkeys(m.upper() for m in self._order_re.findall(text)))[:MAX_ORDERS]
        if order_numbers:
            # The order number is context: a question asked with it ("E… 地址填错了能改吗") is answered too.
            rest = self._rules.beyond("order_status", self._order_re.sub(" ", text))
            known, _ = await self._sure_answers(question_parts(rest) or [rest], lang, ORDER_QUESTION_SCORE) if rest \
                else ({}, [])
            for i, order_no in enumerate(order_numbers, start=1):
                await self._order_status(order_no, out, closing=i == len(order_numbers) and not known)
            await self._give_answers(state, msg, known, out)
            return
        if reading.small_talk is not None:
            name = reading.small_talk
            if name == "greeting":
                out.say("greeting", intent="greeting", opening=False, shop_name=self._shop.display_name(lang))
            else:
                out.say(name, intent=name)
            if name == "goodbye":
                # A complaint nobody has handled is not resolved by the customer leaving.
                turn.record(ev.CLOSED, by="customer", reason="goodbye", resolved=not state.complaints,
                            complaint=bool(state.complaints))
            return
        if reading.filler:
            self._unclear(state, out)
            return
        await self._answer_faq(state, msg, reading.question, lang, out)

    async def _while_queued(self, state: ConversationState, text: str, out: _Speaker) -> None:
        """A message (`text` empty for a photo or a menu click) from a customer waiting for a person: kept for
        the agent. The bot says once that it has it (silence reads as being ignored), answers "how long still?",
        and otherwise stays quiet unless the customer takes the request back or reports an emergency."""
        turn = out.turn
        if text and self._rules.is_only("cancel", text):
            if state.handoff_reason in UPSET_REASONS and not self._rules.is_only("cancel_firmly", text):
                # "算了" after a complaint or in anger is giving up, not a calm "no thanks": the request stays.
                out.say("handoff_keep", intent="handoff")
                return
            turn.record(ev.HANDOFF_CANCELLED)
            turn.handoff_cancelled = True
            out.say("handoff_cancelled", intent="handoff")
        elif text and state.priority != "major" and self._report_major(text, out):
            # A fire or an injury while waiting: the safety advice now, and first in the queue.
            turn.queue_rank = rank("major", self.clock.now())
            turn.record(ev.QUEUED, priority="major", reason="major_complaint", rank=turn.queue_rank)
        elif text and self._open_now() and (self._rules.read(text).wants_human or self._rules.mentions("waiting", text)) \
                and (place := await self.desk.place_of(turn.conversation_id)) is not None:
            # "还要等多久", "人呢？": where they are in the queue, each time they ask.
            out.say("queue_update", intent="waiting", position=place, eta=self.desk.eta_minutes(place))
        elif not state.wait_acknowledged:
            out.say("waiting", intent="waiting", open_now=self._open_now(), hours=self._shop.business_hours)

    def _report_major(self, text: str, out: _Speaker) -> bool:
        """A safety incident or threat reported where the rules are not otherwise read (waiting for a person,
        leaving a message at night): logged, and the customer told what to do now; True when it was one."""
        complaint = self._rules.read(text).complaint
        if complaint is None or complaint.severity != "major":
            return False
        out.turn.record(ev.COMPLAINT, severity="major", category=complaint.category, text=text)
        out.say("complaint_major", intent="complaint_major", category=complaint.category,
                when="now" if self._open_now() else "opening", hours=self._shop.business_hours)
        return True

    async def _return_step(self, state: ConversationState, msg: IncomingMessage, text: str, question: str, lang: str,
                           out: _Speaker) -> None:
        """The return form's next field, unless the customer asks a question in between ("退货运费谁出？") that
        the FAQ answers outright: answered, and the form asks again (it was stored as the product before)."""
        assert state.flow is not None
        if asks(text):
            result = await self._match(question, lang)
            entry = self._entries.get(result.candidates[0].entry_id) if result.decision == "answer" else None
            if entry is not None and not entry.needs_agent:
                await self._give_answer(state, msg, entry.id, out, result)
                self._flow.reprompt(state.flow, out)
                return
        await self._flow.step(state.flow, text, out)

    async def _note_question(self, conv: str, contact: str, out: _Speaker) -> None:
        """The fallback asked for a contact to come back with the answer (the norms' model reply, "and then
        really come back"): the question it could not answer becomes a ticket due in 24 hours."""
        question = _last_question(await self._store.events(conv))
        ticket_id = await open_ticket(self._store, self.clock, out, "question", question=question, contact=contact)
        # Agents see it in their queue, as a message left at night: a ticket alone reached nobody before it was late.
        out.turn.queue_rank = rank("callback", self.clock.now())
        out.turn.record(ev.QUEUED, priority="callback", reason="question", rank=out.turn.queue_rank)
        out.say("question_noted", intent="question_noted", ticket_id=ticket_id)

    def _unclear(self, state: ConversationState, out: _Speaker) -> None:
        """Nothing to look up (emoji, 哦, 哈哈): ask to rephrase; counted as a miss towards offering a person."""
        out.say("unclear", intent="unclear", offer_agent=state.fallback_streak + 1 >= self._handoff.fallbacks_before_offer,
                decision="fallback")

    async def _answer_faq(self, state: ConversationState, msg: IncomingMessage, question: str, lang: str,
                          out: _Speaker) -> None:
        result = await self._match(question, lang)
        if await self._answer_each(state, msg, question, lang, out, whole=result):
            return
        if result.decision == "clarify" and (meant := await self._in_context(out.turn.conversation_id, question,
                                                                            lang, result)):
            await self._give_answer(state, msg, meant, out)
        elif result.decision == "answer":
            await self._give_answer(state, msg, result.candidates[0].entry_id, out, result)
        elif result.decision == "clarify":
            entries = [e for c in result.candidates if (e := self._entries.get(c.entry_id))]
            out.say(
                "clarify",
                intent="faq",
                decision="clarify",
                choices=[e.id for e in entries],
                candidates=_candidates(result),
                suggestions=[Suggestion(e.question, e.question) for e in entries],
                context={"choices": [e.question for e in entries]},
            )
        else:
            streak = state.fallback_streak + 1 >= self._handoff.fallbacks_before_offer
            vip = self._is_vip(msg)
            hand_over = (streak and "fallbacks" in self._handoff.triggers) or (vip and "vip" in self._handoff.triggers)
            out.say("fallback", intent="faq", decision="fallback", candidates=_candidates(result),
                    offer_agent=streak and not hand_over)
            if hand_over:
                await self._hand_over(state, msg, out, "vip" if vip and not streak else "fallbacks")

    async def _match(self, question: str, lang: str) -> MatchResult:
        await self.matcher.prepare(question, lang=lang)  # a new question's encoding, off the event loop
        return self.matcher.match(question, lang=lang)

    async def _in_context(self, conv: str, question: str, lang: str, own: MatchResult) -> str | None:
        """A short follow-up to the FAQ reply just given ("怎么预约安装" → "那要多久？", "and how much is it?") read
        together with the question before it: when the follow-up's own match offers choices, the one of them that
        reading ranks first, leaving out the entry just answered; else None. The message itself offered choices
        (the caller asks only then): the context only breaks the tie."""
        if word_count(question) > FOLLOW_UP_WORDS or not leans_back(question):
            return None
        events = await self._store.events(conv)
        replies = [e for e in events if e.type == ev.BOT_REPLY]
        if not replies or replies[-1].data.get("decision") not in ("answer", "clarify") or \
                self.clock.now() - replies[-1].at > FOLLOW_UP_WITHIN:
            return None
        before = _last_question(events)
        if not before:
            return None
        together = await self._match(f"{before} {question}", lang)
        # The same answer again does not help ("试过了还是不行" after the fix): that stays a miss.
        first = next((c.entry_id for c in together.candidates if c.entry_id != replies[-1].data.get("faq_id")), None)
        return first if first is not None and first in {c.entry_id for c in own.candidates} else None

    async def _answer_each(self, state: ConversationState, msg: IncomingMessage, question: str, lang: str,
                           out: _Speaker, *, whole: MatchResult) -> bool:
        """Several questions in one message ("包邮吗？另外安装收费吗？"): each the FAQ answers outright is answered,
        when that says more than the match of the whole message (which offered choices, or one answer of
        several). True when it answered."""
        parts = question_parts(question)
        if len(parts) < 2:
            return False
        found, missed = await self._sure_answers(parts, lang)
        if not found or (len(found) == 1 and whole.decision == "answer"):
            return False
        await self._give_answers(state, msg, found, out, closing=not missed)
        if missed:  # never dropped without a word: the customer asks those again, or asks for a person
            out.say("unanswered_parts", intent="faq", decision="fallback", questions=[quoted(q) for q in missed])
        return True

    async def _sure_answers(self, questions: list[str], lang: str,
                            min_score: float = 0.0) -> tuple[dict[str, MatchResult], list[str]]:
        """The entries the FAQ answers outright (scoring at least `min_score`) for each question, in order, and
        the questions it does not."""
        found: dict[str, MatchResult] = {}
        missed: list[str] = []
        for question in questions[:MAX_PARTS]:
            result = await self._match(question, lang)
            if result.decision == "answer" and result.candidates[0].score >= min_score:
                found.setdefault(result.candidates[0].entry_id, result)
            else:
                missed.append(question)
        return found, missed

    async def _give_answers(self, state: ConversationState, msg: IncomingMessage, found: dict[str, MatchResult],
                            out: _Speaker, *, closing: bool = True) -> None:
        """Each answer in turn, "anything else?" after the last only (when `closing`)."""
        for i, (entry_id, result) in enumerate(found.items(), start=1):
            await self._give_answer(state, msg, entry_id, out, result, closing=closing and i == len(found))

    async def _give_answer(self, state: ConversationState, msg: IncomingMessage, entry_id: str, out: _Speaker,
                           result: MatchResult | None = None, *, closing: bool = True) -> None:
        entry = self._entries[entry_id]
        score = result.candidates[0].score if result else None
        out.say(
            "faq_answer",
            intent="faq",
            decision="answer",
            faq_id=entry.id,
            score=score,
            candidates=_candidates(result) if result else [],
            answer=entry.answer,
            context={"closing": closing},
        )
        if entry.needs_agent:
            await self._hand_over(state, msg, out, "faq_needs_agent")

    async def _answer_followup(self, state: ConversationState, msg: IncomingMessage, text: str,
                               out: _Speaker) -> bool:
        """A rating for the survey, or yes/no to the complaint follow-up visit; False for anything else."""
        if state.awaiting == "survey":
            score = parse_rating(to_simplified(text))
            if score is None:
                return False
            out.turn.record(ev.RATING, score=score)
            out.say("rating_thanks", intent="rating", opening=False, score=score)
            return True
        # "还是没解决啊" and "解决了，谢谢" answer it as well as the buttons do; "not solved" is checked first.
        no = self._rules.is_only("no", text) or text == self.renderer.render("label_visit_no", out.lang) or \
            self._rules.mentions("unsolved", text)
        yes = not no and (self._rules.is_only("yes", text) or text == self.renderer.render("label_visit_yes", out.lang)
                          or self._rules.mentions("solved", text))
        if not (yes or no):
            return False
        out.turn.record(ev.VISIT_RESULT, answered=True, solved=yes)
        out.say("visit_thanks" if yes else "visit_reopen", intent="complaint_visit", opening=False)
        if no:
            await self._hand_over(state, msg, out, "visit_unsolved", priority="callback", force=True)
        return True

    def _is_vip(self, msg: IncomingMessage) -> bool:
        return msg.customer_id in self._handoff.vip_customers

    def _open_now(self) -> bool:
        opens, closes = self._open_hours
        return opens <= self.clock.now().timetz().replace(tzinfo=None) < closes

    async def _hand_over(self, state: ConversationState, msg: IncomingMessage, out: _Speaker, reason: str, *,
                         priority: str | None = None, force: bool = False) -> bool:
        """Log the request; queue the conversation when config makes `reason` a trigger (or `force`). True if
        queued (or, outside business hours, taken into the leave-a-message flow)."""
        priority = priority or ("vip" if self._is_vip(msg) else "normal")
        out.turn.record(ev.HANDOFF_REQUESTED, reason=reason, priority=priority)
        if not (force or reason in self._handoff.triggers) or state.status not in ("bot", "closed"):
            return False
        if not self._open_now():
            self._leave_message.start(out, reason=reason, hours=self._shop.business_hours)
            return True
        my_rank = rank(priority, self.clock.now())
        position = await self.desk.position(my_rank)
        out.turn.record(ev.QUEUED, priority=priority, reason=reason, rank=my_rank)
        out.turn.queue_rank = my_rank
        out.say("handoff_queued", intent="handoff", position=position, eta=self.desk.eta_minutes(position))
        return True

    async def _answer_pick(self, state: ConversationState, msg: IncomingMessage, text: str, out: _Speaker) -> bool:
        """The customer answered a clarification: a number, the question's words, or "none of these"."""
        choices = [c for c in state.pending_choices if c in self._entries]
        number = picked(text)
        if number == -1:
            number = len(choices)
        if number is not None and 1 <= number <= len(choices):
            await self._give_answer(state, msg, choices[number - 1], out)
            return True
        if number is not None and choices:  # "4" of three: the choices stay open
            out.say("clarify_range", intent="clarify", decision="clarify", count=len(choices), choices=choices)
            return True
        stripped = text.strip().rstrip("?？。.!！")
        for entry_id in choices:
            if stripped == self._entries[entry_id].question.rstrip("?？。.!！"):
                await self._give_answer(state, msg, entry_id, out)
                return True
        if self._rules.is_only("none_of_these", text):
            enough = state.clarify_declines + 1 >= self._handoff.clarify_declines_before_offer
            hand_over = enough and "clarify_declined" in self._handoff.triggers
            # The choices stay open: a second "none of these" counts towards a person, a number still picks.
            out.say("clarify_declined", intent="clarify_declined", offer_agent=enough and not hand_over,
                    choices=choices)
            if enough:
                await self._hand_over(state, msg, out, "clarify_declined")
            return True
        return False

    async def _order_status(self, order_no: str, out: _Speaker, *, closing: bool = True) -> None:
        """The order's status; `closing` adds "anything else?" (not when more replies follow in this turn)."""
        order = await self._orders.find(order_no)
        if order is None:
            out.say("order_not_found", intent="order_status", order_no=order_no, found=False)
            return
        out.say("order_status", intent="order_status", order_no=order_no, found=True,
                context={"order": asdict(order), "closing": closing})


class _Speaker:
    """Renders templates in the customer's language and script, adding the opening once per episode."""

    def __init__(self, engine: ConversationEngine, state: ConversationState, turn: Turn, lang: str,
                 traditional: bool) -> None:
        self._engine = engine
        self.turn = turn
        self.lang = lang
        self._traditional = traditional and lang == "zh"
        self._needs_opening = not state.greeted
        self._buttons = has_buttons(turn.conversation_id)

    def render(self, name: str, **context: Any) -> str:
        text = self._engine.renderer.render(name, self.lang, **{"buttons": self._buttons, **context})
        return to_traditional(text) if self._traditional else text

    def say(
        self,
        template: str,
        *,
        suggestions: list[Suggestion] | None = None,
        opening: bool = True,
        context: dict[str, Any] | None = None,
        **data: Any,
    ) -> None:
        """Render `template` with `context` (plus the JSON-friendly `data`, also logged) and send it."""
        ctx = {**data, **(context or {})}
        text = self.render(template, **ctx)
        if self._needs_opening and opening:
            shop = self._engine._shop.display_name(self.lang)
            text = self.render("opening", shop_name=shop) + "\n" + text
        self._needs_opening = False
        labels = tuple(
            Suggestion(to_traditional(s.label) if self._traditional else s.label, s.value)
            for s in (suggestions or [])
        )
        self.turn.say(Reply(text=text, suggestions=labels, lang=self.lang), template=template, **data)


def _last_question(events: list[Event]) -> str:
    """The text of the customer's last stored message with words in it ("" when none): the one this turn's
    message follows."""
    return next((t for e in reversed(events) if e.type == ev.CUSTOMER_MESSAGE and (t := e.data.get("text"))), "")


def _candidates(result: MatchResult | None) -> list[list[Any]]:
    if result is None:
        return []
    return [[c.entry_id, round(c.score, 4)] for c in result.candidates]


def encode_replies(replies: list[Reply]) -> str:
    return jsoncodec.dumps([r.to_dict() for r in replies])


def decode_replies(raw: str) -> list[Reply]:
    return [Reply.from_dict(r) for r in jsoncodec.loads(raw)]


def transcript_item(e: Event) -> dict[str, Any] | None:
    """One event as a line of the customer-visible history, or None for internal events."""
    base = {"id": f"{e.conversation_id}#{e.seq}", "seq": e.seq, "at": e.at.isoformat()}
    if e.type == ev.CUSTOMER_MESSAGE:
        return {**base, "from": "customer", "text": e.data.get("text", ""), "kind": e.data.get("kind", "text"),
                "client_id": e.data.get("channel_msg_id")}
    if e.type in (ev.BOT_REPLY, ev.AGENT_MESSAGE):
        # The shop's notices (an agent joined, the conversation closed) show as they did live, not as bot answers.
        sender = e.data.get("sender", "bot") if e.type == ev.BOT_REPLY else "agent"
        return {**base, "from": sender, "text": e.data.get("text", ""),
                "suggestions": e.data.get("suggestions", [])}
    return None
