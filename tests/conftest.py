from __future__ import annotations

import os
from dataclasses import replace
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.assemble import build_engine
from bot.config import Settings, load_settings
from bot.engine import ConversationEngine
from bot.storage.sqlite import SqliteStore
from tests.fakes import FakeClock

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env["KEFU_SECRET_KEY"] = "test-secret-key-0123456789abcdef"
    settings = load_settings(ROOT / "config.toml", env)
    # What the app keeps on disk (sentence vectors) goes to a temporary folder, never the checkout's data/.
    return replace(settings, server=replace(settings.server, data_dir=str(tmp_path_factory.mktemp("data"))))


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Repo settings with the real-time follow-up timers off: tests drive follow-ups on the FakeClock."""
    return replace(base_settings, followups=replace(base_settings.followups, scheduler=False))


@pytest.fixture
def clock() -> FakeClock:
    # A Tuesday at 10:00 in Shanghai: inside business hours.
    return FakeClock(datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI))


@pytest.fixture
async def store(clock: FakeClock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(":memory:", clock)
    yield s
    await s.close()


@pytest.fixture
def engine(settings: Settings, store: SqliteStore, clock: FakeClock) -> ConversationEngine:
    return build_engine(settings, store, clock)
