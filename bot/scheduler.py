"""Timers for the follow-ups: the only APScheduler user. The truth is in the store; this only wakes it."""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo

from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.followups import Followups

logger = logging.getLogger(__name__)


class JobScheduler:
    def __init__(self, followups: Followups, tz: tzinfo, *, sweep_seconds: float,
                 daily: Callable[[], Awaitable[object]] | None = None) -> None:
        self._followups = followups
        self._wake: datetime | None = None
        self._scheduler = AsyncIOScheduler(timezone=tz)
        self._scheduler.add_job(self._sweep, IntervalTrigger(seconds=sweep_seconds, timezone=tz), id="sweep",
                                max_instances=1, coalesce=True)
        if daily is not None:
            # Once a day at 04:00 shop time, when the shop is quiet: the retention purge.
            self._scheduler.add_job(daily, CronTrigger(hour=4, timezone=tz), id="daily", max_instances=1,
                                    coalesce=True)

    def start(self, *, paused: bool = False) -> None:
        self._scheduler.start(paused=paused)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def arm(self, due: datetime) -> None:
        """Wake up at `due` unless already waking earlier: one timer for all follow-up jobs, so scheduling a
        job costs a comparison, not a timer, and a restart need not re-arm thousands of pending jobs."""
        if self._wake is not None and self._wake <= due:
            return
        self._wake = due
        self._scheduler.add_job(self._woken, DateTrigger(run_date=due), id="wake", replace_existing=True,
                                misfire_grace_time=None, max_instances=4)

    async def rearm(self) -> None:
        """Wake at the earliest pending job (after a run, at start-up, after a sweep)."""
        due = await self._followups.next_due()
        if due is not None:
            self.arm(due)

    async def _woken(self) -> None:
        self._wake = None
        try:
            await self._followups.run_due()
        except Exception:
            logger.exception("running due follow-ups failed; the sweep tries again")
        await self.rearm()

    def next_fire(self, job_id: str, after: datetime) -> datetime | None:
        """When timer `job_id` fires next after `after` (declarations checked without running them)."""
        job = self._scheduler.get_job(job_id)
        return job.trigger.get_next_fire_time(None, after) if job else None

    def jobs(self) -> list[tuple[str, datetime | None]]:
        """(id, next fire time) of every armed timer."""
        return [(job.id, job.next_run_time) for job in self._scheduler.get_jobs()]

    async def _sweep(self) -> None:
        """Catches jobs armed on another worker or lost in a restart, and raises the overdue alerts."""
        try:
            await self._followups.run_due()
            await self._followups.check_waits()
            await self._followups.check_tickets()
            await self.rearm()
        except Exception:
            logger.exception("follow-up sweep failed; it runs again at the next interval")
