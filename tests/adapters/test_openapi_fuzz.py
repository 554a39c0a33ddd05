"""Schemathesis against the OpenAPI document: no generated input makes the console or admin API answer 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from adapters.openapi import document
from bot.app import create_app
from bot.auth import create_agent
from bot.clock import SystemClock
from bot.config import Settings
from bot.storage.sqlite import SqliteStore
from tests.conftest import SHANGHAI

schema = schemathesis.openapi.from_dict(document())


@dataclass
class Server:
    base_url: str
    cookies: dict[str, str]


@pytest.fixture(scope="module")
def server(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real app in its own thread and loop (schemathesis calls it synchronously over HTTP)."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "kefu.sqlite3"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def start() -> None:
        clock = SystemClock(SHANGHAI)
        store = SqliteStore(path, clock)
        await create_agent(store, "boss", "password-3", role="admin")
        runner = web.AppRunner(create_app(base_settings, store=store, clock=clock))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"], state["store"] = runner, store
        state["port"] = runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(30)
    base = f"http://127.0.0.1:{state['port']}"
    login = requests.post(f"{base}/api/auth/login", json={"username": "boss", "password": "password-3"},
                          headers={"X-Requested-With": "kefu"}, timeout=10)
    assert login.status_code == 200
    yield Server(base, {"kefu_session": login.cookies["kefu_session"]})

    async def stop() -> None:
        await state["runner"].cleanup()  # type: ignore[attr-defined]
        await state["store"].close()  # type: ignore[attr-defined]

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_input_causes_a_server_error(case: schemathesis.Case, server: Server) -> None:
    response = case.call(base_url=server.base_url, cookies=server.cookies, timeout=10)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
