"""Service figures as folds over hand-written event logs: what counts as a complaint, and how often."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from bot import conversation as ev
from bot.config import AlertSettings
from bot.figures import compute
from bot.models import Event
from tests.conftest import SHANGHAI

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)


def log(conv: str, *steps: tuple[str, dict[str, Any]]) -> list[Event]:
    return [Event(conv, type_, T0 + timedelta(minutes=n), data, n + 1) for n, (type_, data) in enumerate(steps)]


def handed(conv: str, *, bot_saw: dict[str, Any] | None, closed_as: str | None) -> list[Event]:
    """A customer handed to agent wang, who closes with the category `closed_as` (None: 无投诉)."""
    steps: list[tuple[str, dict[str, Any]]] = [(ev.CUSTOMER_MESSAGE, {"text": "…"})]
    if bot_saw is not None:
        steps.append((ev.COMPLAINT, bot_saw))
    steps += [(ev.QUEUED, {}), (ev.AGENT_JOINED, {"agent": "wang"}), (ev.AGENT_MESSAGE, {"text": "您好"}),
              (ev.CLOSED, {"by": "wang", "resolved": True, "category": closed_as})]
    return log(conv, *steps)


def figures(logs: dict[str, list[Event]]) -> dict[str, Any]:
    return compute(logs, tickets=[], jobs=[], start=date(2026, 11, 24), end=date(2026, 11, 24), channel=None,
                   tz=SHANGHAI, now=T0 + timedelta(hours=1), timeliness_minutes=5, alerts=AlertSettings())


def test_the_category_an_agent_picks_at_close_counts_as_a_complaint() -> None:
    result = figures({"web:a": handed("web:a", bot_saw=None, closed_as="product_quality")})
    assert result["totals"]["complaints"] == 1
    assert result["complaints_by_category"] == {"product_quality": 1}
    assert result["complaints_by_severity"] == {"general": 1}


def test_a_conversation_is_one_complaint_and_the_agents_category_overrides_the_bots_guess() -> None:
    major = {"severity": "major", "category": "after_sales"}
    logs = {
        "web:a": handed("web:a", bot_saw=major, closed_as="product_quality"),
        "web:b": handed("web:b", bot_saw={"severity": "general", "category": "logistics"}, closed_as=None),
        "web:c": handed("web:c", bot_saw=None, closed_as=None),
    }
    # The bot heard a complaint twice in one conversation: still one complaint.
    logs["web:b"].insert(1, Event("web:b", ev.COMPLAINT, T0, {"severity": "general", "category": "logistics"}, 0))
    result = figures(logs)
    assert result["totals"]["complaints"] == 2
    assert result["complaints_by_category"] == {"product_quality": 1, "logistics": 1}
    assert result["complaints_by_severity"] == {"major": 1, "general": 1}
    [wang] = result["agents"]
    assert wang["conversations"] == 3
