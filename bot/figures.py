"""The service figures managers track (reply-norms.md §5), computed as folds over the event logs.

Pure: takes events, tickets and jobs, returns plain dicts. An "episode" is a conversation from its first
customer message to its close; a customer who comes back later starts a new one.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from bot import conversation as ev
from bot.config import AlertSettings
from bot.models import Event

FCR_WINDOW = timedelta(hours=24)  # resolved at first contact = the customer did not need to come back within this
COMPLAINT_DEADLINE = timedelta(hours=24)  # complaints answered within 24 hours (seed 000/001)


@dataclass
class Episode:
    conversation_id: str
    channel: str
    events: list[Event] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return next(e.at for e in self.events if e.type == ev.CUSTOMER_MESSAGE)

    def has(self, type_: str) -> bool:
        return any(e.type == type_ for e in self.events)

    def first(self, type_: str) -> Event | None:
        return next((e for e in self.events if e.type == type_), None)

    def complaint(self) -> tuple[str, str] | None:
        """(category, severity) if the episode was a complaint, counted once however often it was raised.

        The category an agent picks at close overrides the bot's guess (they read the whole conversation);
        the severity is the bot's (a major one stays major), else general.
        """
        raised = [e for e in self.events if e.type == ev.COMPLAINT]
        closed = self.first(ev.CLOSED)
        chosen = closed.data.get("category") if closed is not None else None
        if not raised and not chosen:
            return None
        severity = "major" if any(e.data.get("severity") == "major" for e in raised) else "general"
        return str(chosen or raised[0].data.get("category") or "other"), severity


def episodes(conversation_id: str, events: Sequence[Event]) -> list[Episode]:
    channel = conversation_id.partition(":")[0]
    out: list[Episode] = []
    current = Episode(conversation_id, channel)
    for e in events:
        current.events.append(e)
        if e.type == ev.CLOSED:
            out.append(current)
            current = Episode(conversation_id, channel)
    out.append(current)
    return [ep for ep in out if ep.has(ev.CUSTOMER_MESSAGE)]


def compute(logs: Mapping[str, Sequence[Event]], *, tickets: Iterable[dict[str, Any]],
            jobs: Iterable[dict[str, Any]], start: date, end: date, channel: str | None, tz: tzinfo,
            now: datetime, timeliness_minutes: int, alerts: AlertSettings) -> dict[str, Any]:
    def in_range(at: datetime) -> bool:
        return start <= at.astimezone(tz).date() <= end

    eps = [ep for conv, events in logs.items() for ep in episodes(conv, events)
           if (channel is None or ep.channel == channel) and in_range(ep.start)]
    starts_by_conv: dict[str, list[datetime]] = defaultdict(list)
    for ep in eps:
        starts_by_conv[ep.conversation_id].append(ep.start)

    daily: dict[date, dict[str, Any]] = {}
    bot_first: list[float] = []
    agent_first: list[float] = []
    timely = answered = 0
    resolved_first = 0
    per_agent: dict[str, dict[str, Any]] = defaultdict(lambda: {"conversations": 0, "ratings": [], "first": [],
                                                                "resolved": 0, "complaints": 0, "complaints_fast": 0})
    handed = bot_resolved = 0
    complaints_cat: Counter[str] = Counter()
    complaints_sev: Counter[str] = Counter()
    for ep in eps:
        complaint = ep.complaint()
        if complaint is not None:
            complaints_cat[complaint[0]] += 1
            complaints_sev[complaint[1]] += 1
        day = ep.start.astimezone(tz).date()
        d = daily.setdefault(day, {"day": day.isoformat(), "conversations": 0, "by_channel": Counter(),
                                   "handoffs": 0, "bot_resolved": 0, "ratings": []})
        d["conversations"] += 1
        d["by_channel"][ep.channel] += 1
        first_msg = ep.first(ev.CUSTOMER_MESSAGE)
        first_bot = ep.first(ev.BOT_REPLY)
        if first_msg and first_bot:
            bot_first.append((first_bot.at - first_msg.at).total_seconds())
        queued = ep.first(ev.QUEUED)
        closed = ep.first(ev.CLOSED)
        if queued is not None:
            handed += 1
            d["handoffs"] += 1
            first_agent = ep.first(ev.AGENT_MESSAGE)
            if first_agent is not None:
                agent_first.append((first_agent.at - queued.at).total_seconds())
        decided = [e for e in ep.events if e.type == ev.BOT_REPLY and e.data.get("decision")]
        by_bot = queued is None and (not decided or decided[-1].data.get("decision") == "answer")
        if by_bot:
            bot_resolved += 1
            d["bot_resolved"] += 1
        t, a = _timeliness(ep.events, timedelta(minutes=timeliness_minutes))
        timely, answered = timely + t, answered + a
        resolved = by_bot or (closed is not None and closed.data.get("resolved") is True)
        came_back = any(ep.start < s <= ep.start + FCR_WINDOW for s in starts_by_conv[ep.conversation_id])
        if resolved and not came_back:
            resolved_first += 1
        joined = ep.first(ev.AGENT_JOINED)
        if joined is not None:
            name = (closed.data.get("by") if closed and closed.data.get("by") not in (None, "bot", "customer")
                    else joined.data.get("agent"))
            stats = per_agent[str(name)]
            stats["conversations"] += 1
            first_agent = ep.first(ev.AGENT_MESSAGE)
            if first_agent is not None:
                stats["first"].append((first_agent.at - joined.at).total_seconds())
            if closed is not None and closed.data.get("resolved"):
                stats["resolved"] += 1
            if complaint is not None:
                stats["complaints"] += 1
                if closed is not None and closed.at - ep.start <= COMPLAINT_DEADLINE:
                    stats["complaints_fast"] += 1

    ratings: list[int] = []
    for conv, events in logs.items():
        if channel is not None and conv.partition(":")[0] != channel:
            continue
        handler = None
        for e in events:
            if e.type == ev.CLOSED:
                handler = e.data.get("by") if e.data.get("by") not in ("bot", "customer") else None
            if not in_range(e.at):
                continue
            if e.type == ev.RATING:
                ratings.append(int(e.data["score"]))
                daily.get(e.at.astimezone(tz).date(), {}).setdefault("ratings", []).append(int(e.data["score"]))
                if handler:
                    per_agent[handler]["ratings"].append(int(e.data["score"]))

    visits = [j for j in jobs if j.get("kind") == "complaint_visit" and j.get("status") in
              ("done", "failed", "missed", "skipped")]
    open_tickets = [t for t in tickets if t.get("status") == "open"]
    overdue = [t for t in open_tickets if datetime.fromisoformat(t["due_at"]) < now]
    n = len(eps)
    totals = {
        "conversations": n,
        "bot_resolved_rate": _rate(bot_resolved, n),
        "handoff_rate": _rate(handed, n),
        "first_contact_resolution": _rate(resolved_first, n),
        "satisfaction_avg": round(statistics.mean(ratings), 2) if ratings else None,
        "satisfaction_share": _rate(sum(r >= 4 for r in ratings), len(ratings)),
        "reply_timeliness_rate": _rate(timely, answered),
        "followup_completion": _rate(sum(j["status"] == "done" for j in visits), len(visits)),
        "tickets_open": len(open_tickets),
        "tickets_overdue": len(overdue),
        "complaints": sum(complaints_cat.values()),
    }
    agents = []
    for name, s in sorted(per_agent.items()):
        sat = statistics.mean(s["ratings"]) if s["ratings"] else None
        resolution = s["resolved"] / s["conversations"] if s["conversations"] else 0.0
        speed = s["complaints_fast"] / s["complaints"] if s["complaints"] else 1.0
        # Agents' score weights (seed 000): satisfaction 40%, resolution efficiency 30%, complaint speed 30%.
        score = 100 * (0.4 * ((sat or 0) / 5) + 0.3 * resolution + 0.3 * speed)
        agents.append({"username": name, "conversations": s["conversations"],
                       "satisfaction_avg": round(sat, 2) if sat is not None else None,
                       "first_response_median": _median(s["first"]), "score": round(score, 1)})
    return {
        "range": {"from": start.isoformat(), "to": end.isoformat(), "channel": channel},
        "totals": totals,
        "first_response": {"bot": {"median": _median(bot_first), "p90": _p90(bot_first)},
                           "agent": {"median": _median(agent_first), "p90": _p90(agent_first)}},
        "daily": [_day_row(daily[day]) for day in sorted(daily)],
        "satisfaction_distribution": {str(k): ratings.count(k) for k in range(1, 6)},
        "complaints_by_category": dict(complaints_cat),
        "complaints_by_severity": dict(complaints_sev),
        "agents": agents,
        "alerts": _alerts(totals, alerts),
    }


def _timeliness(events: Sequence[Event], limit: timedelta) -> tuple[int, int]:
    """(timely, total) customer messages an agent had to answer, timely = answered within `limit`."""
    timely = total = 0
    waiting: datetime | None = None
    with_agent = False
    for e in events:
        if e.type == ev.AGENT_JOINED:
            with_agent = True
        elif e.type in (ev.RELEASED, ev.CLOSED):
            with_agent = False
            waiting = None
        elif e.type == ev.CUSTOMER_MESSAGE and with_agent and waiting is None:
            waiting = e.at
        elif e.type == ev.AGENT_MESSAGE and waiting is not None:
            total += 1
            timely += e.at - waiting <= limit
            waiting = None
    return timely, total


def _day_row(d: dict[str, Any]) -> dict[str, Any]:
    n = d["conversations"]
    return {"day": d["day"], "conversations": n, "by_channel": dict(d["by_channel"]),
            "handoff_rate": _rate(d["handoffs"], n), "bot_resolved_rate": _rate(d["bot_resolved"], n),
            "satisfaction_avg": round(statistics.mean(d["ratings"]), 2) if d["ratings"] else None}


def _alerts(totals: dict[str, Any], a: AlertSettings) -> list[dict[str, Any]]:
    checks = [("satisfaction_share", a.satisfaction_min, "below"), ("handoff_rate", a.handoff_rate_max, "above"),
              ("first_contact_resolution", a.first_contact_resolution_min, "below"),
              ("reply_timeliness_rate", a.reply_timeliness_min, "below")]
    out = []
    for figure, threshold, direction in checks:
        value = totals.get(figure)
        if value is None:
            continue
        if (direction == "below" and value < threshold) or (direction == "above" and value > threshold):
            out.append({"figure": figure, "value": value, "threshold": threshold, "direction": direction})
    return out


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1)


def csv_rows(figures: dict[str, Any]) -> list[list[str]]:
    """The daily table for CSV export."""
    rows = [["day", "conversations", "handoff_rate", "bot_resolved_rate", "satisfaction_avg"]]
    for d in figures["daily"]:
        rows.append([d["day"], str(d["conversations"]), _cell(d["handoff_rate"]), _cell(d["bot_resolved_rate"]),
                     _cell(d["satisfaction_avg"])])
    return rows


def _cell(value: float | None) -> str:
    return "" if value is None else str(value)
