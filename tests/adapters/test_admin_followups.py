"""Admin follow-up and ticket endpoints, and one end-to-end run with the real scheduler and real delays."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from bot.app import create_app
from bot.auth import create_agent
from bot.clock import SystemClock
from bot.config import Settings
from bot.storage.sqlite import SqliteStore
from tests.adapters.test_console import H, log_in
from tests.adapters.test_webchat import hello, send
from tests.conftest import SHANGHAI
from tests.fakes import FakeClock

Client = Any


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, store: SqliteStore,
                 clock: FakeClock) -> Client:
    await create_agent(store, "wang", "password-1")
    await create_agent(store, "boss", "password-3", role="admin")
    return await aiohttp_client(create_app(settings, store=store, clock=clock))


async def test_followups_are_admin_only_and_cancellable(client: Client, store: SqliteStore) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        await hello(ws)
        await send(ws, "c-1", "再见")
    assert (await client.get("/api/followups")).status == 401
    wang = await log_in(client, "wang", "password-1")
    boss = await log_in(client, "boss", "password-3")
    try:
        assert (await wang.get("/api/followups")).status == 403
        items = (await (await boss.get("/api/followups?status=pending")).json())["items"]
        assert [j["kind"] for j in items] == ["survey"]
        job_id = items[0]["id"]
        assert (await boss.delete(f"/api/followups/{job_id}")).status == 403  # no CSRF header
        assert (await boss.delete(f"/api/followups/{job_id}", headers=H)).status == 200
        assert (await boss.delete(f"/api/followups/{job_id}", headers=H)).status == 409
        assert (await boss.delete("/api/followups/nope", headers=H)).status == 404
        assert (await store.job_get(job_id))["status"] == "cancelled"  # type: ignore[index]
    finally:
        await wang.close()
        await boss.close()


async def test_ticket_status_change_reaches_the_customer(client: Client, store: SqliteStore) -> None:
    ws = await client.ws_connect("/ws/chat")
    await hello(ws)
    for i, text in enumerate(("我要退货", "E20261118001234", "扫地机器人", "不想要了", "13812345678", "确认")):
        await send(ws, f"m-{i}", text)
    [ticket] = await store.tickets()
    wang = await log_in(client, "wang", "password-1")
    try:
        resp = await wang.post(f"/api/tickets/{ticket['id']}/status", json={"status": "flying"}, headers=H)
        assert resp.status == 400
        resp = await wang.post(f"/api/tickets/{ticket['id']}/status", json={"status": "approved"}, headers=H)
        assert resp.status == 200
        job = next(j for j in await store.jobs() if j["kind"] == "ticket_update")
        assert job["data"] == {"ticket_id": ticket["id"], "status": "approved"}
    finally:
        await wang.close()
        await ws.close()


async def test_real_scheduler_sends_a_survey_to_a_webchat_customer(aiohttp_client: AiohttpClient,
                                                                   settings: Settings, tmp_path: Any) -> None:
    """Real timers, real delays of about a second, end to end to the widget's socket."""
    live = replace(settings, followups=replace(settings.followups, scheduler=True, survey_delay_minutes=0,
                                               quiet_hours="03:00-03:01", sweep_seconds=0.5))
    clock = SystemClock(SHANGHAI)
    store = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    client = await aiohttp_client(create_app(live, store=store, clock=clock))
    async with client.ws_connect("/ws/chat") as ws:
        await hello(ws)
        await send(ws, "c-1", "再见")
        while True:
            frame = await ws.receive_json(timeout=5)
            if frame["type"] == "reply" and frame["suggestions"]:
                break
        assert "打个分" in frame["text"]
        assert [s["value"] for s in frame["suggestions"]] == ["5", "4", "3", "2", "1"]
    assert [j["status"] for j in await store.jobs()] == ["done"]
    await store.close()


async def test_the_wake_timer_alone_runs_each_job_when_due(aiohttp_client: AiohttpClient, settings: Settings,
                                                           tmp_path: Any) -> None:
    """With the sweep an hour away, only the one wake timer can send these surveys: it must re-arm itself."""
    live = replace(settings, followups=replace(settings.followups, scheduler=True, survey_delay_minutes=0,
                                               quiet_hours="03:00-03:01", sweep_seconds=3600))
    clock = SystemClock(SHANGHAI)
    store = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    client = await aiohttp_client(create_app(live, store=store, clock=clock))
    for customer in ("c-1", "c-2"):
        async with client.ws_connect("/ws/chat") as ws:
            await hello(ws)
            await send(ws, customer, "再见")
            while True:
                frame = await ws.receive_json(timeout=5)
                if frame["type"] == "reply" and frame["suggestions"]:
                    break
            assert "打个分" in frame["text"]
    assert [j["status"] for j in await store.jobs()] == ["done", "done"]
    await store.close()
