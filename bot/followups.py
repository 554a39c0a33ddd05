"""Scheduled follow-ups: survey, complaint follow-up visit (回访), nudge and idle close, ticket updates,
and the overdue alerts. Plain async code on an injected clock; bot/scheduler.py only provides timers.

Every job is a store record (kind, conversation, due time, status, attempts). A job is claimed by moving
it pending → running with the store's compare-and-set, so it fires once however many workers run.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot import conversation as ev
from bot.clock import Clock
from bot.config import FollowupSettings, HandoffSettings, parse_hours
from bot.conversation import ConversationState, fold
from bot.delivery import Delivery, has_buttons
from bot.handoff import CONSOLE_TOPIC
from bot.models import Event, Reply, Suggestion
from bot.outbox import Undeliverable
from bot.normalize import to_traditional
from bot.replies import ReplyRenderer
from bot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

SURVEY, VISIT, VISIT_EXPIRE, NUDGE, IDLE_CLOSE, TICKET_UPDATE = (
    "survey", "complaint_visit", "visit_expire", "nudge", "idle_close", "ticket_update")
MAX_ATTEMPTS = 4
GRACE = timedelta(hours=1)  # a job found overdue at start-up fires if it is at most this late, else "missed"
VISIT_ANSWER_WINDOW = timedelta(days=2)
CUSTOMER_SERVICE_WINDOW = timedelta(hours=48)  # WeChat: pushes only within 48 h of the customer's last message
WINDOW_CHANNELS = ("wechat",)
WINDOW_MARGIN = timedelta(hours=2)  # a follow-up a window would shut out is sent this long before it closes
SILENT_KINDS = (VISIT_EXPIRE,)  # bookkeeping jobs: nothing is sent, so quiet hours do not apply
# "Are you still there?" and the idle close make sense minutes after the customer's last message: in quiet
# hours they are dropped, not sent out of context the next morning (the conversation stays as it was).
MOMENTARY_KINDS = (NUDGE, IDLE_CLOSE)


class Timer(Protocol):
    def arm(self, due: datetime) -> None:
        """Wake the follow-up runner at `due` (best effort; the sweep catches the rest)."""
        ...


class Followups:
    def __init__(self, *, store: ConversationStore, clock: Clock, settings: FollowupSettings,
                 handoff: HandoffSettings, renderer: ReplyRenderer, delivery: Delivery, default_lang: str) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._handoff = handoff
        self._renderer = renderer
        self._delivery = delivery
        self._default_lang = default_lang
        self._quiet = parse_hours("followups.quiet_hours", settings.quiet_hours)
        self.timer: Timer | None = None

    # -- planning: what a turn's events start and stop -----------------------------------------------

    def plan(self, conversation_id: str, after: ConversationState, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The jobs a turn's events start (survey and visit on closing, a nudge after a question left open),
        not yet stored: the engine stores and logs them with the turn, in its one append."""
        now = self._clock.now()
        types = [e.type for e in events]
        closed = next((e for e in events if e.type == ev.CLOSED), None)
        jobs = []
        if closed is not None:
            # After a complaint the follow-up visit asks how it went; a survey on top would ask twice.
            if closed.data.get("complaint"):
                jobs.append(self.job(VISIT, conversation_id, self._visit_time(conversation_id, after, now)))
            elif closed.data.get("reason") != "idle":
                jobs.append(self.job(SURVEY, conversation_id, now + timedelta(minutes=self._settings.survey_delay_minutes)))
        elif after.status == "bot" and (after.flow is not None or after.pending_choices) and ev.BOT_REPLY in types:
            jobs.append(self.job(NUDGE, conversation_id, now + timedelta(minutes=self._settings.nudge_after_minutes)))
        return jobs

    def _visit_time(self, conversation_id: str, after: ConversationState, now: datetime) -> datetime:
        """The configured days after the close, or sooner where the channel reaches the customer only within
        48 hours of their last message (WeChat): before that closes, outside quiet hours. The norms ask for
        the visit within three days; skipped for the window, it never came at all."""
        due = now + timedelta(days=self._settings.complaint_visit_days)
        if conversation_id.partition(":")[0] in WINDOW_CHANNELS and after.last_customer_at is not None:
            due = min(due, self._before_quiet(after.last_customer_at + CUSTOMER_SERVICE_WINDOW - WINDOW_MARGIN))
        return max(due, now)

    async def react(self, conversation_id: str, before: ConversationState, after: ConversationState,
                    events: Sequence[Event], *, started: Sequence[dict[str, Any]] | None = None) -> None:
        """Cancel the jobs the events end and start the ones they call for: `started` when the events' own
        append already stored and logged them (the engine's turns), else planned and stored here (an agent
        closing)."""
        types = [e.type for e in events]
        pending = list(before.followups)
        if ev.CUSTOMER_MESSAGE in types:
            kinds = [NUDGE, IDLE_CLOSE] + ([SURVEY] if before.status == "closed" else [])
            await self._cancel(conversation_id, pending, kinds, reason="customer_wrote")
        if any(e.type == ev.CLOSED for e in events):
            await self._cancel(conversation_id, pending, [NUDGE, IDLE_CLOSE], reason="closed")
        if started is None:
            for job in self.plan(conversation_id, after, events):
                await self._start(job)
        else:
            for job in started:
                self._arm(job)

    async def ticket_changed(self, ticket: dict[str, Any]) -> None:
        """Tell the customer a ticket's new status (sent at once, or after quiet hours)."""
        await self.schedule(TICKET_UPDATE, ticket["conversation_id"], self._clock.now(),
                            data={"ticket_id": ticket["id"], "status": ticket["status"]})

    async def schedule(self, kind: str, conversation_id: str, due: datetime, *,
                       data: dict[str, Any] | None = None) -> dict[str, Any]:
        job = self.job(kind, conversation_id, due, data=data)
        await self._start(job)
        return job

    def job(self, kind: str, conversation_id: str, due: datetime, *,
            data: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new pending job record; a job that sends something is moved out of the quiet hours (one that
        makes sense only now is dropped when it comes due in them instead)."""
        if kind not in SILENT_KINDS + MOMENTARY_KINDS:
            due = self.allowed_time(due)
        return {"id": f"{kind}-{secrets.token_hex(6)}", "kind": kind, "conversation_id": conversation_id,
                "due_at": due.timestamp(), "due": due.isoformat(), "status": "pending", "attempts": 0,
                "created_at": self._clock.now().isoformat(), "data": data or {}}

    async def _start(self, job: dict[str, Any]) -> None:
        await self._store.job_put(job)
        await self._log(job["conversation_id"], ev.FOLLOWUP_SCHEDULED, **scheduled(job))
        self._arm(job)

    def _arm(self, job: dict[str, Any]) -> None:
        if self.timer is not None:
            self.timer.arm(datetime.fromisoformat(job["due"]))

    async def _cancel(self, conversation_id: str, pending: list[tuple[str, str]], kinds: Sequence[str], *,
                      reason: str) -> None:
        """Cancel the conversation's pending jobs of these kinds, as its log lists them (every job scheduled
        is logged there), and take them off `pending`."""
        for job_id, kind in list(pending):
            if kind in kinds:
                pending.remove((job_id, kind))
                if await self._store.job_transition(job_id, "pending", "cancelled", cancel_reason=reason):
                    await self._log(conversation_id, "followup_cancelled", job_id=job_id, kind=kind, reason=reason)

    async def cancel_job(self, job_id: str, *, reason: str) -> bool:
        if not await self._store.job_transition(job_id, "pending", "cancelled", cancel_reason=reason):
            return False
        job = await self._store.job_get(job_id)
        if job is not None:
            await self._log(job["conversation_id"], "followup_cancelled", job_id=job_id, kind=job["kind"],
                            reason=reason)
        return True

    def allowed_time(self, when: datetime) -> datetime:
        """`when`, or the end of the quiet hours it falls in (shop time zone)."""
        start, end = self._quiet
        local = when.astimezone(self._clock.now().tzinfo)
        t = local.timetz().replace(tzinfo=None)
        quiet = (start <= t or t < end) if start > end else (start <= t < end)
        if not quiet:
            return local
        day = local.date() if t < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=local.tzinfo)

    def _before_quiet(self, when: datetime) -> datetime:
        """`when`, or the last minute before the quiet hours it falls in began."""
        local = when.astimezone(self._clock.now().tzinfo)
        if self.allowed_time(local) == local:
            return local
        start = self._quiet[0]
        day = local.date() if local.timetz().replace(tzinfo=None) >= start else local.date() - timedelta(days=1)
        return datetime.combine(day, start, tzinfo=local.tzinfo) - timedelta(minutes=1)

    # -- running ----------------------------------------------------------------------------------

    async def run_due(self, *, startup: bool = False) -> int:
        """Run every pending job that is due; at start-up, jobs late by more than GRACE are marked missed."""
        now = self._clock.now()
        done = 0
        for job in await self._store.jobs_due(now.timestamp(), limit=500):
            if startup and now.timestamp() - job["due_at"] > GRACE.total_seconds():
                if await self._store.job_transition(job["id"], "pending", "missed"):
                    await self._log(job["conversation_id"], "followup_missed", job_id=job["id"], kind=job["kind"])
                continue
            if await self.run_job(job["id"]):
                done += 1
        return done

    async def next_due(self) -> datetime | None:
        """When the earliest pending job is due."""
        first = await self._store.jobs_due(math.inf, limit=1)
        return datetime.fromisoformat(first[0]["due"]) if first else None

    async def run_job(self, job_id: str) -> bool:
        """Claim and run one job if it is due; True when this call ran it."""
        now = self._clock.now()
        job = await self._store.job_get(job_id)
        if job is None or job["status"] != "pending" or job["due_at"] > now.timestamp():
            return False
        if not await self._store.job_transition(job_id, "pending", "running", claimed_at=now.isoformat()):
            return False  # another worker has it
        allowed = self.allowed_time(now)
        if job["kind"] not in SILENT_KINDS and allowed > now:
            if job["kind"] in MOMENTARY_KINDS:
                await self._store.job_transition(job_id, "running", "skipped", finished_at=now.isoformat())
                await self._log(job["conversation_id"], "followup_skipped", job_id=job_id, kind=job["kind"],
                                reason="quiet_hours")
                return False
            await self._requeue(job, allowed, attempts=job["attempts"])
            return False
        try:
            outcome = await self._fire(job)
        except Undeliverable as exc:  # e.g. WeChat's 45015: a retry cannot succeed, so do not schedule one
            await self._log(job["conversation_id"], "followup_skipped", job_id=job_id, kind=job["kind"],
                            reason=exc.reason)
            outcome = "skipped"
        except Exception as exc:
            logger.warning("follow-up %s failed (attempt %d): %s", job_id, job["attempts"] + 1, exc)
            outcome = "failed"
        if outcome == "failed":
            attempts = job["attempts"] + 1
            if attempts >= MAX_ATTEMPTS:
                await self._store.job_transition(job_id, "running", "failed", attempts=attempts)
                await self._log(job["conversation_id"], "followup_failed", job_id=job_id, kind=job["kind"])
            else:
                await self._requeue(job, now + timedelta(minutes=2 ** attempts), attempts=attempts)
            return False
        await self._store.job_transition(job_id, "running", outcome, finished_at=now.isoformat())
        return True

    async def _requeue(self, job: dict[str, Any], due: datetime, *, attempts: int) -> None:
        await self._store.job_transition(job["id"], "running", "pending", due_at=due.timestamp(),
                                         due=due.isoformat(), attempts=attempts)
        if self.timer is not None:
            self.timer.arm(due)

    async def _fire(self, job: dict[str, Any]) -> str:
        """Do the job; the final status: done, skipped (nothing to do) or failed."""
        conv = job["conversation_id"]
        state = fold(await self._store.events(conv))
        kind = job["kind"]
        now = self._clock.now()
        if kind == VISIT_EXPIRE:
            if state.awaiting == VISIT:
                await self._log(conv, ev.VISIT_RESULT, answered=False, solved=None)
            return "done"
        if kind in (NUDGE, IDLE_CLOSE) and state.status != "bot":
            return "skipped"
        if conv.partition(":")[0] in WINDOW_CHANNELS and (
            state.last_customer_at is None or now - state.last_customer_at > CUSTOMER_SERVICE_WINDOW
        ):
            await self._log(conv, "followup_skipped", job_id=job["id"], kind=kind, reason="outside_48h_window")
            return "skipped"
        if kind == SURVEY:
            labels = [self._render(state, f"label_rating_{n}") for n in range(5, 0, -1)]
            await self._send(conv, state, "survey", suggestions=[Suggestion(label, str(n))
                                                                  for label, n in zip(labels, range(5, 0, -1))])
        elif kind == VISIT:
            await self._send(conv, state, "complaint_visit", suggestions=[
                Suggestion(self._render(state, "label_visit_yes"), self._renderer.render("label_visit_yes", self._lang(state))),
                Suggestion(self._render(state, "label_visit_no"), self._renderer.render("label_visit_no", self._lang(state)))])
            await self.schedule(VISIT_EXPIRE, conv, now + VISIT_ANSWER_WINDOW)
        elif kind == NUDGE:
            await self._send(conv, state, "nudge")
            await self.schedule(IDLE_CLOSE, conv, now + timedelta(minutes=self._settings.close_after_nudge_minutes))
        elif kind == IDLE_CLOSE:
            await self._send(conv, state, "idle_close")
            await self._log(conv, ev.CLOSED, by="bot", reason="idle", resolved=None)
        elif kind == TICKET_UPDATE:
            await self._send(conv, state, "ticket_update", **job["data"])
        await self._log(conv, "followup_sent", job_id=job["id"], kind=kind)
        return "done"

    # -- the overdue sweeps -----------------------------------------------------------------------

    async def check_waits(self) -> int:
        """Customers waiting for a person longer than the limit: a courteous update and a console alert,
        once per wait."""
        now = self._clock.now()
        limit = timedelta(minutes=self._handoff.max_wait_minutes)
        alerted = 0
        candidates = [c for c, _ in await self._store.queue_items()]
        candidates += [r["conversation_id"] for r in await self._store.records("assignment")]
        for conv in candidates:
            events = await self._store.events(conv)
            state = fold(events)
            since = state.waiting_since
            if since is None or now - since < limit:
                continue
            if any(e.type == "wait_alert" and e.data.get("since") == since.isoformat() for e in events):
                continue
            await self._log(conv, "wait_alert", since=since.isoformat())
            await self._send(conv, state, "wait_update", minutes=int((now - since).total_seconds() // 60))
            await self._store.publish(CONSOLE_TOPIC, {"kind": "alert", "alert": "wait_exceeded",
                                                      "conversation_id": conv,
                                                      "minutes": int((now - since).total_seconds() // 60)})
            alerted += 1
        return alerted

    async def check_tickets(self) -> int:
        """Open tickets past their 24-hour commitment: a console alert, once per ticket."""
        now = self._clock.now()
        alerted = 0
        for ticket in await self._store.tickets():
            if ticket.get("status") != "open" or ticket.get("overdue_alerted"):
                continue
            if datetime.fromisoformat(ticket["due_at"]) > now:
                continue
            await self._store.put_ticket({**ticket, "overdue_alerted": now.isoformat()})
            await self._store.publish(CONSOLE_TOPIC, {"kind": "alert", "alert": "ticket_overdue",
                                                      "conversation_id": ticket["conversation_id"],
                                                      "ticket_id": ticket["id"]})
            alerted += 1
        return alerted

    # -- helpers ----------------------------------------------------------------------------------

    def _lang(self, state: ConversationState) -> str:
        return state.lang or self._default_lang

    def _render(self, state: ConversationState, template: str, **context: Any) -> str:
        text = self._renderer.render(template, self._lang(state), **context)
        return to_traditional(text) if state.traditional and self._lang(state) == "zh" else text

    async def _send(self, conv: str, state: ConversationState, template: str, *,
                    suggestions: list[Suggestion] | None = None, **context: Any) -> None:
        text = self._render(state, template, buttons=has_buttons(conv), **context)
        reply = Reply(text=text, suggestions=tuple(suggestions or ()), lang=self._lang(state))
        if not await self._delivery.send(conv, [reply], strict=True):
            raise RuntimeError(f"channel could not deliver to {conv}")
        # Logged once delivered (a retry must not log it twice); web customers offline find it in history.
        await self._log(conv, ev.BOT_REPLY, text=text, template=template, intent="followup",
                        suggestions=[{"label": s.label, "value": s.value} for s in reply.suggestions])

    async def _log(self, conv: str, type_: str, **data: Any) -> None:
        await self._store.append(conv, [Event(conv, type_, self._clock.now(), data)])


def scheduled(job: dict[str, Any]) -> dict[str, Any]:
    """The data of a job's followup_scheduled event."""
    return {"job_id": job["id"], "kind": job["kind"], "due": job["due"]}


_RATING_WORDS = {"非常满意": 5, "很满意": 5, "满意": 4, "还行": 3, "一般": 3, "一般般": 3, "不满意": 2, "不太满意": 2,
                 "很不满意": 1, "非常不满意": 1, "很好": 5, "非常好": 5, "五星": 5, "好评": 5, "五星好评": 5, "挺好": 4, "不错": 4,
                 "还可以": 3, "可以": 3, "差": 1, "很差": 1, "太差了": 1, "差评": 1,
                 "very satisfied": 5, "satisfied": 4, "great": 5, "excellent": 5, "good": 4, "ok": 3, "okay": 3,
                 "neutral": 3, "bad": 2, "unsatisfied": 2, "dissatisfied": 2, "very dissatisfied": 1}
_RATING_WORD = "|".join(sorted(map(re.escape, _RATING_WORDS), key=len, reverse=True))
# A rating is the whole message: a digit (with 分/星, as the button reads: "5分 非常满意") and/or a rating word,
# then only particles, thanks and punctuation. "1.8米的床垫有现货吗" is a question, not a 1.
_RATING = re.compile(rf"^(?:([1-5])\s*(?:分|星|颗星|stars?|/5)?)?[\s,，]*({_RATING_WORD})?"
                     r"[的了吧啊呀哦啦,，。.!！~～\s]*(?:谢谢|thanks|thank you)?[的了吧啊呀哦啦,，。.!！~～\s]*$")


def parse_rating(text: str) -> int | None:
    """1-5 from a digit or the usual words (满意, 不错, satisfied…) when the message is nothing else, else None.
    Expects simplified Chinese."""
    m = _RATING.match(text.strip().lower())
    if m is None or not (m.group(1) or m.group(2)):
        return None
    return int(m.group(1)) if m.group(1) else _RATING_WORDS[m.group(2)]

