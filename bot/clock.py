"""The single source of "now": core code asks a Clock, so tests move time instead of sleeping."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime in the shop's time zone."""
        ...


class SystemClock:
    """Wall-clock time in the shop's configured time zone."""

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz

    def now(self) -> datetime:
        return datetime.now(self._tz)
