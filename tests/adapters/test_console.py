"""The console API over a real loopback server: auth, every transition, live delivery both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from bot.app import create_app
from bot.auth import create_agent
from bot.config import Settings
from bot.storage.sqlite import SqliteStore
from tests.adapters.test_webchat import hello, send
from tests.fakes import FakeClock

H = {"X-Requested-With": "kefu"}
Client = Any


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, store: SqliteStore,
                 clock: FakeClock) -> Client:
    await create_agent(store, "wang", "password-1", display_name="小王")
    await create_agent(store, "li", "password-2", display_name="小李")
    await create_agent(store, "boss", "password-3", role="admin")
    return await aiohttp_client(create_app(settings, store=store, clock=clock))


async def log_in(client: Client, username: str, password: str) -> aiohttp.ClientSession:
    # unsafe=True: keep cookies for an IP-address host (the loopback test server).
    session = aiohttp.ClientSession(base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await session.post("/api/auth/login", json={"username": username, "password": password}, headers=H)
    assert resp.status == 200, await resp.text()
    return session


async def test_anonymous_and_customers_get_nothing(client: Client) -> None:
    for path in ("/api/console/queue", "/api/console/conversations", "/api/auth/me", "/api/console/agents"):
        assert (await client.get(path)).status == 401
    assert (await client.post("/api/console/conversations/web:x/claim", headers=H)).status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws/console")
    assert info.value.status == 401
    # A web-chat visitor token is not a console session.
    async with client.ws_connect("/ws/chat") as ws:
        token = (await hello(ws))["token"]
    client.session.cookie_jar.update_cookies({"kefu_session": token})
    assert (await client.get("/api/console/queue")).status == 401


async def test_login_sets_a_safe_cookie_and_logout_ends_it(client: Client) -> None:
    resp = await client.post("/api/auth/login", json={"username": "wang", "password": "password-1"}, headers=H)
    assert resp.status == 200
    assert (await resp.json())["display_name"] == "小王"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert (await client.get("/api/auth/me")).status == 200
    assert (await client.post("/api/auth/logout", headers=H)).status == 204
    assert (await client.get("/api/auth/me")).status == 401


async def test_wrong_passwords_are_throttled(client: Client) -> None:
    for _ in range(5):
        resp = await client.post("/api/auth/login", json={"username": "wang", "password": "nope"}, headers=H)
        assert resp.status == 401
    resp = await client.post("/api/auth/login", json={"username": "wang", "password": "password-1"}, headers=H)
    assert resp.status == 429 and (await resp.json())["error"] == "too_many_attempts"
    unknown = await client.post("/api/auth/login", json={"username": "ghost", "password": "x"}, headers=H)
    assert unknown.status == 401


async def test_state_changes_need_the_csrf_header(client: Client) -> None:
    resp = await client.post("/api/auth/login", json={"username": "wang", "password": "password-1"})
    assert resp.status == 403
    await client.post("/api/auth/login", json={"username": "wang", "password": "password-1"}, headers=H)
    assert (await client.post("/api/console/status", json={"status": "away"})).status == 403
    assert (await client.post("/api/console/status", json={"status": "away"}, headers=H)).status == 200


async def test_bad_bodies_get_4xx(client: Client) -> None:
    await client.post("/api/auth/login", json={"username": "wang", "password": "password-1"}, headers=H)
    assert (await client.post("/api/console/status", data="{nope", headers=H)).status == 400
    assert (await client.post("/api/console/status", json=[1], headers=H)).status == 400
    assert (await client.post("/api/console/status", json={"status": "asleep"}, headers=H)).status == 400
    assert (await client.post("/api/auth/login", json={"username": 1, "password": None}, headers=H)).status == 400
    resp = await client.get("/api/console/conversations/web:nobody")
    assert resp.status == 404


async def test_customer_and_agent_talk_live_both_ways(client: Client) -> None:
    customer = await client.ws_connect("/ws/chat")
    await hello(customer)
    frames = await send(customer, "c-1", "转人工")
    assert any("第 **1** 位" in f.get("text", "") for f in frames)
    wang = await log_in(client, "wang", "password-1")
    try:
        console = await wang.ws_connect("/ws/console")
        first = await console.receive_json(timeout=5)
        assert first["type"] == "queue" and len(first["items"]) == 1
        conv = first["items"][0]["conversation_id"]
        assert first["items"][0]["priority"] == "normal"
        await console.send_json({"type": "watch", "conversation_id": conv})
        # The customer writes while queued: the console watching it sees the message live.
        await customer.send_json({"type": "message", "id": "c-2", "text": "我的订单还没到"})
        msg = await _next(console, "message")
        assert msg["item"]["text"] == "我的订单还没到"

        assert (await wang.post(f"/api/console/conversations/{conv}/claim", headers=H)).status == 200
        joined = await _next_ws(customer, lambda f: f["type"] == "reply" and "小王" in f["text"])
        assert joined["from"] == "system"
        resp = await wang.post(f"/api/console/conversations/{conv}/reply", json={"text": "您好，我来帮您查一下。"},
                               headers=H)
        assert resp.status == 200 and (await resp.json())["warnings"] == []
        agent_reply = await _next_ws(customer, lambda f: f["type"] == "reply" and f["from"] == "agent")
        assert agent_reply["text"] == "您好，我来帮您查一下。"
        await wang.post(f"/api/console/conversations/{conv}/typing", json={"on": True}, headers=H)
        typing = await _next_ws(customer, lambda f: f["type"] == "typing" and f["from"] == "agent")
        assert typing["on"] is True

        detail = await (await wang.get(f"/api/console/conversations/{conv}")).json()
        assert [e["from"] for e in detail["events"] if e["type"] in ("customer_message", "agent_message")] == [
            "customer", "customer", "agent"]
        mine = await (await wang.get("/api/console/conversations")).json()
        assert mine["items"][0]["conversation_id"] == conv

        assert (await wang.post(f"/api/console/conversations/{conv}/release", headers=H)).status == 200
        await _next_ws(customer, lambda f: f["type"] == "reply" and "智能助手" in f["text"])
        await console.close()
    finally:
        await wang.close()
        await customer.close()


async def test_second_claim_gets_409_and_others_cannot_act(client: Client) -> None:
    customer = await client.ws_connect("/ws/chat")
    await hello(customer)
    await send(customer, "c-1", "转人工")
    wang = await log_in(client, "wang", "password-1")
    li = await log_in(client, "li", "password-2")
    try:
        conv = (await (await wang.get("/api/console/queue")).json())["items"][0]["conversation_id"]
        results = await asyncio.gather(wang.post(f"/api/console/conversations/{conv}/claim", headers=H),
                                       li.post(f"/api/console/conversations/{conv}/claim", headers=H))
        assert sorted(r.status for r in results) == [200, 409]
        loser = li if results[0].status == 200 else wang
        winner = wang if loser is li else li
        resp = await loser.post(f"/api/console/conversations/{conv}/reply", json={"text": "您好"}, headers=H)
        assert resp.status == 403
        resp = await winner.post(f"/api/console/conversations/{conv}/close",
                                 json={"resolved": False, "category": "weather"}, headers=H)
        assert resp.status == 400
        resp = await winner.post(f"/api/console/conversations/{conv}/close",
                                 json={"resolved": True, "category": "logistics"}, headers=H)
        assert resp.status == 200
    finally:
        await wang.close()
        await li.close()
        await customer.close()


async def test_canned_replies_and_live_norms_check(client: Client) -> None:
    wang = await log_in(client, "wang", "password-1")
    try:
        canned = await (await wang.get("/api/console/canned?lang=zh")).json()
        assert any(i["source"] == "template" for i in canned["items"])
        found = await (await wang.get("/api/console/canned", params={"q": "退货运费谁承担", "lang": "zh"})).json()
        assert any(i["source"] == "faq" for i in found["items"])
        warn = await (await wang.post("/api/console/check", json={"text": "你自己看吧", "lang": "zh"},
                                      headers=H)).json()
        assert {w["code"] for w in warn["warnings"]} >= {"informal_you", "banned_phrase"}
        ok = await (await wang.post("/api/console/check", json={"text": "您好，请稍等", "lang": "zh"},
                                    headers=H)).json()
        assert ok["warnings"] == []
        agents = await (await wang.get("/api/console/agents")).json()
        assert {a["username"] for a in agents["items"]} == {"wang", "li", "boss"}
    finally:
        await wang.close()


async def _next(ws: aiohttp.ClientWebSocketResponse, type_: str) -> dict[str, Any]:
    return await _next_ws(ws, lambda f: f["type"] == type_)


async def _next_ws(ws: aiohttp.ClientWebSocketResponse, pred: Any) -> dict[str, Any]:
    while True:
        frame = await ws.receive_json(timeout=5)
        if pred(frame):
            return frame  # type: ignore[no-any-return]

