"""The web-chat protocol over a real loopback server: history, resend without duplicates, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError, web
from pytest_aiohttp import AiohttpClient

from bot.app import create_app
from bot.config import Settings
from bot.storage.sqlite import SqliteStore
from tests.fakes import FakeClock

Client = Any


@pytest.fixture
def app(settings: Settings, store: SqliteStore, clock: FakeClock) -> web.Application:
    return create_app(settings, store=store, clock=clock)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


async def hello(ws: aiohttp.ClientWebSocketResponse, token: str | None = None, lang: str = "zh") -> dict[str, Any]:
    await ws.send_json({"type": "hello", "token": token, "lang": lang})
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome"
    return welcome  # type: ignore[no-any-return]


async def until(ws: aiohttp.ClientWebSocketResponse, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Frames up to and including the first that satisfies pred."""
    frames = []
    while True:
        frame = await ws.receive_json(timeout=5)
        frames.append(frame)
        if pred(frame):
            return frames


def typing_off(frame: dict[str, Any]) -> bool:
    return frame["type"] == "typing" and frame["on"] is False


async def send(ws: aiohttp.ClientWebSocketResponse, cid: str, text: str) -> list[dict[str, Any]]:
    await ws.send_json({"type": "message", "id": cid, "text": text})
    return await until(ws, lambda f: typing_off(f) or f["type"] == "error")


async def test_demo_page_widget_and_config_are_served(client: Client) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert "widget.js" in await page.text()
    js = await client.get("/static/webchat/widget.js")
    assert js.status == 200
    conf = await (await client.get("/api/webchat/config?lang=en")).json()
    assert conf["shop_name"] == "Home & Living Store" and conf["lang"] == "en"
    assert conf["strings"] and conf["max_message_chars"] == 2000
    assert (await client.get("/healthz")).status == 200


async def test_question_gets_ack_then_reply(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        welcome = await hello(ws)
        assert welcome["history"] == [] and welcome["token"]
        frames = await send(ws, "c-1", "可以开发票吗")
        types = [f["type"] for f in frames]
        assert types[0] == "typing" and "ack" in types and "reply" in types
        ack = next(f for f in frames if f["type"] == "ack")
        assert ack == {"type": "ack", "id": "c-1", "duplicate": False}
        reply = next(f for f in frames if f["type"] == "reply")
        assert reply["from"] == "bot" and reply["reply_to"] == "c-1" and "发票" in reply["text"]


async def test_reload_restores_history_and_resend_is_not_doubled(client: Client, store: SqliteStore) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        token = (await hello(ws))["token"]
        await send(ws, "c-1", "可以开发票吗")
    async with client.ws_connect("/ws/chat") as ws:
        welcome = await hello(ws, token)
        assert welcome["token"] == token
        history = welcome["history"]
        assert [h["from"] for h in history] == ["customer", "bot"]
        assert history[0]["client_id"] == "c-1" and history[0]["text"] == "可以开发票吗"
        # The widget did not see the ack before the drop and sends the same message again.
        frames = await send(ws, "c-1", "可以开发票吗")
        assert {"type": "ack", "id": "c-1", "duplicate": True} in frames
        assert not [f for f in frames if f["type"] == "reply"]
    conv = (await store.conversations())[0]
    assert sum(e.type == "customer_message" for e in await store.events(conv)) == 1


async def test_forged_or_foreign_token_gets_a_fresh_visitor(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        token = (await hello(ws))["token"]
        await send(ws, "c-1", "我的电话是13812345678，帮我退货")
    visitor, _, tag = token.rpartition(".")
    for forged in (f"{visitor}.{'A' * len(tag)}", f"v_someoneelse.{tag}", "garbage", 12345):
        async with client.ws_connect("/ws/chat") as ws:
            welcome = await hello(ws, forged)  # type: ignore[arg-type]
            assert welcome["history"] == []
            assert welcome["token"] != token


async def test_two_visitors_never_see_each_other(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as a, client.ws_connect("/ws/chat") as b:
        await hello(a)
        await hello(b)
        await send(a, "a-1", "我要退货")
        frames = await send(b, "b-1", "可以开发票吗")
        assert all("订单号" not in f.get("text", "") for f in frames)
        await a.send_json({"type": "ping"})
        assert await a.receive_json(timeout=5) == {"type": "pong"}


async def test_two_tabs_of_one_visitor_both_see_replies(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as a:
        token = (await hello(a))["token"]
        async with client.ws_connect("/ws/chat") as b:
            await hello(b, token)
            await send(a, "a-1", "可以开发票吗")
            frame = await b.receive_json(timeout=5)
            assert frame["type"] == "reply" and "发票" in frame["text"]


async def test_bad_frames_get_an_error_and_the_socket_stays(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        await ws.send_str("not json")
        err = await ws.receive_json(timeout=5)
        assert err["type"] == "error" and err["code"] == "bad_frame" and err["message"]
        await ws.send_json({"type": "message", "id": "x", "text": "hi"})
        assert (await ws.receive_json(timeout=5))["code"] == "not_ready"
        await hello(ws)
        for bad in ({"type": "message", "id": "x"}, {"type": "message", "text": "hi"}, {"type": 5}, [1, 2],
                    {"type": "message", "id": "x" * 100, "text": "hi"}, {"type": "launch"}):
            await ws.send_json(bad)
            assert (await ws.receive_json(timeout=5))["code"] == "bad_frame"
        frames = await send(ws, "ok-1", "可以开发票吗")
        assert any(f["type"] == "reply" for f in frames)


async def test_too_long_message_gets_a_notice_not_a_disconnect(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        await hello(ws, lang="en")
        frames = await send(ws, "long-1", "x" * 2001)
        assert frames == [{"type": "error", "code": "too_large", "id": "long-1",
                           "message": frames[0]["message"]}]
        assert "2000" in frames[0]["message"]
        assert any(f["type"] == "reply" for f in await send(ws, "ok-1", "hello"))


async def test_rate_limit_is_polite(aiohttp_client: AiohttpClient, settings: Settings, store: SqliteStore,
                                   clock: FakeClock) -> None:
    limited = replace(settings, channels=replace(
        settings.channels, webchat=replace(settings.channels.webchat, rate_limit_per_minute=3)))
    client = await aiohttp_client(create_app(limited, store=store, clock=clock))
    async with client.ws_connect("/ws/chat") as ws:
        await hello(ws)
        for i in range(3):
            await send(ws, f"m-{i}", "你好")
        frames = await send(ws, "m-3", "你好")
        assert frames[-1]["code"] == "rate_limited" and "稍等" in frames[-1]["message"]


async def test_foreign_origin_is_refused(client: Client) -> None:
    with pytest.raises(WSServerHandshakeError) as info:
        await client.ws_connect("/ws/chat", headers={"Origin": "https://evil.example"})
    assert info.value.status == 403
    own = f"http://{client.host}:{client.port}"
    async with client.ws_connect("/ws/chat", headers={"Origin": own}) as ws:
        await hello(ws)


async def test_customer_text_comes_back_verbatim_never_as_html(client: Client) -> None:
    async with client.ws_connect("/ws/chat") as ws:
        token = (await hello(ws))["token"]
        await send(ws, "x-1", "<img src=x onerror=alert(1)>")
    async with client.ws_connect("/ws/chat") as ws:
        history = (await hello(ws, token))["history"]
        assert history[0]["text"] == "<img src=x onerror=alert(1)>"


async def test_shutdown_tells_widgets_to_reconnect(aiohttp_client: AiohttpClient, settings: Settings,
                                                  store: SqliteStore, clock: FakeClock) -> None:
    app = create_app(settings, store=store, clock=clock)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/ws/chat")
    await hello(ws)
    # The client keeps reading while the server shuts down, as a widget does.
    closing = asyncio.create_task(client.server.close())
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()
    await closing



async def test_config_allows_only_the_configured_origins_cross_origin(
        aiohttp_client: AiohttpClient, settings: Settings, store: SqliteStore, clock: FakeClock) -> None:
    shop = "https://shop.example"
    embedded = replace(settings, channels=replace(
        settings.channels, webchat=replace(settings.channels.webchat, allowed_origins=(shop,))))
    client = await aiohttp_client(create_app(embedded, store=store, clock=clock))
    allowed = await client.get("/api/webchat/config?lang=zh", headers={"Origin": shop})
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == shop
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers  # the widget fetches without credentials
    for origin in ("https://evil.example", "null", "https://shop.example.evil.example"):
        refused = await client.get("/api/webchat/config", headers={"Origin": origin})
        assert refused.status == 200 and "Access-Control-Allow-Origin" not in refused.headers
    same = await client.get("/api/webchat/config")
    assert "Access-Control-Allow-Origin" not in same.headers
    # The socket takes the same origin list.
    async with client.ws_connect("/ws/chat", headers={"Origin": shop}) as ws:
        await hello(ws)


async def test_default_config_sends_no_cors_header(client: Client) -> None:
    resp = await client.get("/api/webchat/config", headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
