"""Real-browser fixtures: the whole app on a loopback port, Debian's Chromium driven by Playwright.

Chromium is never downloaded (`playwright install` is not used): tests.requirements.chromium_path() finds the
system browser, skipping loudly where it is missing and failing under CI=true.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import create_app
from bot.auth import create_agent
from bot.clock import SystemClock
from bot.config import Settings
from bot.kbadmin import load_or_seed
from bot.storage.sqlite import SqliteStore
from tests.requirements import chromium_path
from tests.small_kb import ENTRIES

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
AGENT = ("wang", "password-1", "小王")
COLLEAGUE = ("li", "password-2", "小李")
SUPERVISOR = ("boss", "password-3", "主管老张")


@dataclass(frozen=True)
class LiveApp:
    base_url: str
    store: SqliteStore
    app: web.Application


class LiveServer:
    """The real app on a fixed loopback port that a test can stop and start again (a server restart).

    The store outlives the app, as a database outlives a server process, so a restarted server sees
    the same conversations and visitor tokens (same secret key).
    """

    def __init__(self, settings: Settings, store: SqliteStore, clock: SystemClock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.port = 0
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.app = create_app(self.settings, store=self.store, clock=self.clock)
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Graceful shutdown: open sockets are closed with 1001 (going away), then the port is released."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.app = None


@pytest.fixture
async def live_app(settings: Settings, tmp_path: Path) -> AsyncIterator[LiveApp]:
    """The real app on 127.0.0.1:<free port>, a file-backed SQLite store, three accounts, the small KB.

    The real clock (the browser shows real waiting times), with the shop open around the clock so the
    handoff always queues instead of turning into leave-a-message, whatever time the suite runs. No
    follow-up timers: a test runs due follow-ups itself (the survey is due at once, no quiet hours).
    """
    settings = replace(settings, shop=replace(settings.shop, business_hours="00:00-24:00"),
                       followups=replace(settings.followups, survey_delay_minutes=0, quiet_hours="00:00-00:00"))
    clock = SystemClock(settings.shop.tz)
    store = SqliteStore(str(tmp_path / "kefu.sqlite3"), clock)
    await load_or_seed(store, ENTRIES, clock)
    for (username, password, display_name), role in ((AGENT, "agent"), (COLLEAGUE, "agent"), (SUPERVISOR, "admin")):
        await create_agent(store, username, password, display_name=display_name, role=role)
    app = create_app(settings, store=store, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield LiveApp(f"http://{host}:{port}", store, app)
    finally:
        await runner.cleanup()
        await store.close()


@pytest.fixture
async def live_shop(settings: Settings, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The real app with the sample shop's knowledge base (knowledge_base/), restartable, no accounts.

    Follow-ups are left to the test (no timers) and quiet hours are off, so a survey can be run at once.
    """
    settings = replace(settings, shop=replace(settings.shop, business_hours="00:00-24:00"))
    clock = SystemClock(settings.shop.tz)
    store = SqliteStore(str(tmp_path / "shop.sqlite3"), clock)
    server = LiveServer(settings, store, clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await store.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def shown_lines(text: str) -> list[str]:
    """Reply markup's lines as the widget and console show them: no bold marks, list numbers, link targets."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^\s*\d{1,3}\.\s+", "", line)
        line = re.sub(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)", r"\1", line).replace("**", "").strip()
        if line:
            lines.append(line)
    return lines


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where this test saves its screenshots (git-ignored), one folder per test."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
