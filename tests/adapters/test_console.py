"""The console API over a real loopback server: auth, every transition, live delivery both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from bot import appkeys
from bot.app import create_app
from bot.auth import SESSION_SECONDS, create_agent, update_agent
from bot.config import Settings
from bot.storage.sqlite import SqliteStore
from tests.adapters.test_webchat import hello, send, until
from tests.conftest import SHANGHAI
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
    async with handed_over(client) as (customer, wang, li, conv):
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


async def test_the_answer_check_warns_about_the_greeting_and_close_the_bot_adds(client: Client) -> None:
    """The admin's FAQ editor checks an answer as the bot will send it, and learns the close it adds."""
    boss = await log_in(client, "boss", "password-3")
    try:
        text = "您好，退货运费由本店承担，请您放心。\n请问还有什么可以帮您的吗？"
        body = await (await boss.post("/api/console/check", json={"text": text, "lang": "zh", "kind": "answer"},
                                      headers=H)).json()
        assert {w["code"] for w in body["warnings"]} == {"greeting_start", "repeats_close"}
        assert body["close"] == "请问还有什么可以帮您的吗？"
        english = await (await boss.post("/api/console/check", json={"text": "Please keep the box.", "lang": "en",
                                                                     "kind": "answer"}, headers=H)).json()
        assert english == {"warnings": [], "close": "Is there anything else I can help you with?"}
        # An agent's reply may greet: its check is unchanged.
        reply = await (await boss.post("/api/console/check", json={"text": text, "lang": "zh"}, headers=H)).json()
        assert reply == {"warnings": []}
        odd = await boss.post("/api/console/check", json={"text": text, "lang": "zh", "kind": "poem"}, headers=H)
        assert odd.status == 400
    finally:
        await boss.close()


async def _console(session: aiohttp.ClientSession, *watch: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect("/ws/console")
    assert (await ws.receive_json(timeout=5))["type"] == "queue"
    for conv in watch:
        await ws.send_json({"type": "watch", "conversation_id": conv})
    await ws.send_json({"type": "ping"})
    await until(ws, lambda f: f["type"] == "pong")  # the watches are in before the pong
    return ws


async def _quiet(ws: aiohttp.ClientWebSocketResponse, *also: aiohttp.ClientWebSocketResponse,
                 client: Client) -> list[dict[str, Any]]:
    """Every frame the console (and `also`) got so far: a sentinel published on the bus now arrives after
    everything published before it (one bus, handled in order), so waiting for it drains the rest."""
    marker = f"sentinel-{id(ws)}-{len(also)}"
    await client.app[appkeys.STORE].publish("console", {"kind": "conversation", "conversation_id": marker})
    frames = (await until(ws, lambda f: f.get("conversation_id") == marker and f["type"] == "conversation"))[:-1]
    for other in also:
        await until(other, lambda f: f.get("conversation_id") == marker and f["type"] == "conversation")
    return frames


@asynccontextmanager
async def handed_over(client: Client) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientSession,
                                                               aiohttp.ClientSession, str]]:
    """A web-chat customer who asked for a person, and agents wang and li logged in; all closed after."""
    customer = await client.ws_connect("/ws/chat")
    await hello(customer)
    await send(customer, "c-1", "转人工")
    wang = await log_in(client, "wang", "password-1")
    li = await log_in(client, "li", "password-2")
    try:
        yield customer, wang, li, await _newest_in_queue(wang)
    finally:
        await wang.close()
        await li.close()
        await customer.close()


async def _newest_in_queue(session: aiohttp.ClientSession) -> str:
    items = (await (await session.get("/api/console/queue")).json())["items"]
    return str(items[-1]["conversation_id"])


async def test_every_transition_reaches_a_watching_console_as_items(client: Client) -> None:
    """Claim, transfer, release and close each push their log items (and the customer's notice) live."""
    async with handed_over(client) as (customer, wang, li, conv):
        console = await _console(wang, conv)
        assert (await wang.post(f"/api/console/conversations/{conv}/claim", headers=H)).status == 200
        items = [f["item"] for f in await _quiet(console, client=client) if f["type"] == "message"]
        assert [i["type"] for i in items] == ["agent_joined", "bot_reply"]
        assert items[0]["agent"] == "wang" and "小王" in items[1]["text"]

        assert (await wang.post(f"/api/console/conversations/{conv}/transfer", json={"to": "li"},
                                headers=H)).status == 200
        frames = await _quiet(console, client=client)
        moved = next(f["item"] for f in frames if f["type"] == "message" and f["item"]["type"] == "transferred")
        # The item's sender stays "system"; the previous holder is "from_agent" (it used to overwrite "from").
        assert (moved["from"], moved["from_agent"], moved["to"]) == ("system", "wang", "li")
        told = await _next_ws(customer, lambda f: f["type"] == "reply" and "小李" in f["text"])
        assert told["from"] == "system"
        conversation = next(f for f in frames if f["type"] == "conversation")
        assert conversation == {"type": "conversation", "conversation_id": conv, "status": "agent", "agent": "li",
                                "transferred_from": "wang"}
        detail = await (await li.get(f"/api/console/conversations/{conv}")).json()
        assert [e for e in detail["events"] if e["type"] == "transferred"][0]["from"] == "system"

        li_console = await _console(li, conv)
        assert (await li.post(f"/api/console/conversations/{conv}/release", headers=H)).status == 200
        items = [f["item"] for f in await _quiet(li_console, client=client) if f["type"] == "message"]
        assert [i["type"] for i in items] == ["released", "bot_reply"]

        await send(customer, "c-2", "转人工")
        assert (await li.post(f"/api/console/conversations/{conv}/claim", headers=H)).status == 200
        await _quiet(li_console, client=client)
        assert (await li.post(f"/api/console/conversations/{conv}/close",
                              json={"resolved": True, "category": None}, headers=H)).status == 200
        items = [f["item"] for f in await _quiet(li_console, client=client) if f["type"] == "message"]
        assert [i["type"] for i in items] == ["bot_reply", "closed"]
        assert "感谢您的咨询" in items[0]["text"] and items[1]["resolved"] is True
        await console.close()
        await li_console.close()


async def test_customer_typing_reaches_only_consoles_watching_a_handed_over_conversation(client: Client) -> None:
    async with handed_over(client) as (customer, wang, li, conv):
        watching = await _console(wang, conv)
        elsewhere = await _console(li)
        await customer.send_json({"type": "typing", "on": True})
        [typing] = [f for f in await until(watching, lambda f: f["type"] == "typing")]
        assert typing == {"type": "typing", "conversation_id": conv, "from": "customer", "on": True}
        await customer.send_json({"type": "typing", "on": False})
        assert (await until(watching, lambda f: f["type"] == "typing"))[-1]["on"] is False
        assert not [f for f in await _quiet(elsewhere, client=client) if f["type"] == "typing"]
        # A bad typing frame is ignored, the socket stays up.
        await customer.send_json({"type": "typing", "on": "yes"})
        await customer.send_json({"type": "ping"})
        assert await customer.receive_json(timeout=5) == {"type": "pong"}

        # Back with the bot: typing is nobody's business.
        assert (await wang.post(f"/api/console/conversations/{conv}/claim", headers=H)).status == 200
        assert (await wang.post(f"/api/console/conversations/{conv}/release", headers=H)).status == 200
        await _quiet(watching, client=client)
        await customer.send_json({"type": "typing", "on": True})
        await customer.send_json({"type": "ping"})
        await _next_ws(customer, lambda f: f["type"] == "pong")
        assert not [f for f in await _quiet(watching, client=client) if f["type"] == "typing"]
        await watching.close()
        await elsewhere.close()


async def test_wait_alerts_use_kind_and_reach_supervisors_and_the_holding_agent_only(
        client: Client, clock: FakeClock) -> None:
    waiting = await client.ws_connect("/ws/chat")
    await hello(waiting)
    await send(waiting, "a-1", "转人工")
    held = await client.ws_connect("/ws/chat")
    await hello(held)
    await send(held, "b-1", "转人工")
    wang = await log_in(client, "wang", "password-1")
    li = await log_in(client, "li", "password-2")
    boss = await log_in(client, "boss", "password-3")
    try:
        queue = (await (await wang.get("/api/console/queue")).json())["items"]
        queued_conv, held_conv = queue[0]["conversation_id"], queue[1]["conversation_id"]
        assert (await wang.post(f"/api/console/conversations/{held_conv}/claim", headers=H)).status == 200
        consoles = {name: await _console(session) for name, session in (("wang", wang), ("li", li), ("boss", boss))}
        clock.advance(minutes=6)
        # The real producer: the follow-up sweep publishes {"kind": "alert", "alert": "wait_exceeded", …}.
        assert await client.app[appkeys.ENGINE].followups.check_waits() == 2
        got = {name: [f for f in await _quiet(ws, client=client) if f["type"] == "alert"]
               for name, ws in consoles.items()}
        assert sorted(a["conversation_id"] for a in got["boss"]) == sorted([queued_conv, held_conv])
        assert [a["conversation_id"] for a in got["wang"]] == [held_conv]
        assert got["li"] == []
        alert = got["wang"][0]
        assert alert == {"type": "alert", "kind": "wait_exceeded", "conversation_id": held_conv, "minutes": 6}
        for ws in consoles.values():
            await ws.close()
    finally:
        for session in (wang, li, boss):
            await session.close()
        await waiting.close()
        await held.close()


async def _cut_off(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The next thing the console gets is the close for a session that ended: no frame before it."""
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "logged_out"), msg
    assert ws.closed


async def test_logout_closes_every_console_socket_of_that_session(client: Client) -> None:
    """Another tab of a logged-out session stops receiving the queue and customers' messages at once."""
    async with handed_over(client) as (customer, wang, li, conv):
        tab_a, tab_b = await _console(wang), await _console(wang, conv)
        colleague = await _console(li, conv)
        assert (await wang.post("/api/auth/logout", headers=H)).status == 204
        await _cut_off(tab_a)
        await _cut_off(tab_b)
        # A new customer queues and the watched one writes: only the colleague still hears of it.
        other = await client.ws_connect("/ws/chat")
        await hello(other)
        await send(other, "o-1", "转人工")
        await customer.send_json({"type": "message", "id": "c-9", "text": "还在吗"})
        await until(colleague, lambda f: f["type"] == "message" and f["item"].get("text") == "还在吗")
        assert (await wang.get("/api/console/queue")).status == 401
        await colleague.close()
        await other.close()


async def test_an_expired_session_is_cut_off_at_the_next_push(client: Client, clock: FakeClock) -> None:
    async with handed_over(client) as (customer, wang, li, conv):
        console = await _console(wang, conv)
        clock.advance(seconds=SESSION_SECONDS + 1)
        await customer.send_json({"type": "message", "id": "c-9", "text": "我的订单呢"})
        await _cut_off(console)


async def test_a_disabled_account_is_cut_off_at_the_next_ping(client: Client, store: SqliteStore) -> None:
    wang = await log_in(client, "wang", "password-1")
    try:
        console = await _console(wang)
        await update_agent(store, "wang", disabled=True)  # what `python -m bot agents disable wang` does
        await console.send_json({"type": "ping"})
        await _cut_off(console)
    finally:
        await wang.close()


async def test_errors_carry_a_message_a_person_can_read(client: Client) -> None:
    anonymous = await client.get("/api/console/queue")
    body = await anonymous.json()
    assert anonymous.status == 401 and body["error"] == "login_required" and "登录" in body["message"]
    english = await (await client.get("/api/console/queue", headers={"Accept-Language": "en-US,en;q=0.9"})).json()
    assert "sign in" in english["message"]
    wrong = await client.post("/api/auth/login", json={"username": "wang", "password": "nope"}, headers=H)
    assert (await wrong.json())["message"] == "用户名或密码不正确。"
    no_csrf = await client.post("/api/auth/login", json={"username": "wang", "password": "password-1"})
    assert no_csrf.status == 403 and (await no_csrf.json())["message"]

    async with handed_over(client) as (customer, wang, li, conv):
        assert (await wang.post(f"/api/console/conversations/{conv}/claim", headers=H)).status == 200
        late = await li.post(f"/api/console/conversations/{conv}/claim", headers=H)
        assert late.status == 409 and await late.json() == {"error": "already_claimed",
                                                            "message": "该会话已被其他同事接入。"}
        for resp, code in (
            (await li.post(f"/api/console/conversations/{conv}/reply", json={"text": "您好"}, headers=H),
             "not_your_conversation"),
            (await wang.post(f"/api/console/conversations/{conv}/reply", json={"text": " "}, headers=H), "bad_text"),
            (await wang.post(f"/api/console/conversations/{conv}/reply", data="{oops", headers=H), "bad_json"),
            (await wang.post(f"/api/console/conversations/{conv}/transfer", json={"to": "ghost"}, headers=H),
             "unknown_agent"),
            (await wang.get("/api/console/conversations/web:nobody"), "not_found"),
        ):
            body = await resp.json()
            assert resp.status >= 400 and body["error"] == code and body["message"], (code, body)
            assert "{" not in body["message"]
        unknown = await wang.post(f"/api/console/conversations/{conv}/close",
                                  json={"resolved": True, "category": "weather"}, headers={**H, "Accept-Language": "en"})
        assert (await unknown.json())["message"] == "Invalid complaint category."


async def test_console_masks_phone_and_id_numbers_but_the_callback_ticket_keeps_the_contact(
        aiohttp_client: AiohttpClient, settings: Settings, store: SqliteStore) -> None:
    """Agents answer without the customer's numbers; a callback needs the contact, so its ticket shows it."""
    night = FakeClock(datetime(2026, 11, 24, 23, 30, tzinfo=SHANGHAI))
    await create_agent(store, "wang", "password-1", display_name="小王")
    client = await aiohttp_client(create_app(settings, store=store, clock=night))
    customer = await client.ws_connect("/ws/chat")
    token = (await hello(customer))["token"]
    phone, id_number = "13912345678", "110101199003071234"
    await send(customer, "c-0", f"我的身份证是{id_number}")
    await send(customer, "c-1", "转人工")
    await send(customer, "c-2", f"电话 {phone}")
    await send(customer, "c-3", f"空调不制冷，请打 {phone} 约维修")
    wang = await log_in(client, "wang", "password-1")
    try:
        [item] = (await (await wang.get("/api/console/queue")).json())["items"]
        assert item["priority"] == "callback"
        assert phone not in item["preview"] and "139****5678" in item["preview"]
        conv = item["conversation_id"]
        detail = await (await wang.get(f"/api/console/conversations/{conv}")).json()
        shown = json.dumps(detail["events"], ensure_ascii=False)
        assert phone not in shown and id_number not in shown
        assert "139****5678" in shown and "1101**********1234" in shown
        [ticket] = detail["tickets"]
        assert ticket["contact"] == phone  # the one place it is whole: the agent calls back
        # The customer's own history is theirs, unmasked.
        again = await client.ws_connect("/ws/chat")
        history = (await hello(again, token))["history"]
        assert any(id_number in h["text"] for h in history)
        await again.close()
    finally:
        await wang.close()
        await customer.close()


async def _next(ws: aiohttp.ClientWebSocketResponse, type_: str) -> dict[str, Any]:
    return await _next_ws(ws, lambda f: f["type"] == type_)


async def _next_ws(ws: aiohttp.ClientWebSocketResponse, pred: Any) -> dict[str, Any]:
    while True:
        frame = await ws.receive_json(timeout=5)
        if pred(frame):
            return frame  # type: ignore[no-any-return]

