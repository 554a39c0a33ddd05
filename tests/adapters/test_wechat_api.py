"""Customer-service API client against the local fake of Tencent's API on a real loopback server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp import web

from adapters.wechat_api import OUTSIDE_WINDOW, TRANSPORT_ERROR, SendResult, TokenCache, WechatApi
from bot.privacy import mask_id
from bot.storage.sqlite import SqliteStore
from tests.fake_wechat_api import FAKE_WECHAT_STATE, FakeWechatState, make_fake_wechat_api
from tests.fakes import FakeClock

APP_ID = "wx0123456789abcdef"
SECRET = "s3cr3t-app-secret-never-logged"
OPENID = "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
START = 1_790_000_000.0

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


class FakeTime:
    """Unix seconds that move only when a test says so; shared by the client, its cache and the fake."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class DictCache:
    """An in-memory TokenCache with TTLs on the fake time, recording every write."""

    time: FakeTime
    values: dict[str, tuple[str, float]]
    sets: list[tuple[str, float]]

    async def cache_get(self, key: str) -> str | None:
        value, until = self.values.get(key, ("", 0.0))
        return value if value and self.time() < until else None

    async def cache_set(self, key: str, value: str, ttl_seconds: float) -> None:
        self.values[key] = (value, self.time() + ttl_seconds)
        self.sets.append((key, ttl_seconds))


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def cache(fake_time: FakeTime) -> DictCache:
    return DictCache(fake_time, {}, [])


@pytest.fixture
async def server(aiohttp_server: ServerFactory, fake_time: FakeTime) -> TestServer:
    return await aiohttp_server(make_fake_wechat_api(APP_ID, SECRET, clock=fake_time))


@pytest.fixture
def state(server: TestServer) -> FakeWechatState:
    s = server.app[FAKE_WECHAT_STATE]
    s.customer_wrote(OPENID)
    return s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def base_url(server: TestServer) -> str:
    return str(server.make_url("/"))


@pytest.fixture
def make_api(session: aiohttp.ClientSession, server: TestServer, cache: DictCache,
             fake_time: FakeTime) -> Callable[..., WechatApi]:
    def make(*, api_base: str | None = None, app_id: str = APP_ID, app_secret: str = SECRET,
             timeout_seconds: float = 5.0) -> WechatApi:
        return WechatApi(session, api_base=api_base or base_url(server), app_id=app_id, app_secret=app_secret,
                         cache=cache, clock=fake_time, timeout_seconds=timeout_seconds)
    return make


@pytest.fixture
def api(make_api: Callable[..., WechatApi]) -> WechatApi:
    return make_api()


# --- sending and the token ------------------------------------------------------------------------------


async def test_sends_chinese_text_as_utf8_json(api: WechatApi, state: FakeWechatState) -> None:
    result = await api.send_text(OPENID, "您好，您的退货已受理 😀")
    assert result == SendResult(True, 0, "ok")
    [msg] = state.messages
    assert (msg.touser, msg.content) == (OPENID, "您好，您的退货已受理 😀")
    assert "您好".encode() in msg.body and b"\\u" not in msg.body  # not ASCII-escaped on the wire
    assert json.loads(msg.body) == {"touser": OPENID, "msgtype": "text", "text": {"content": "您好，您的退货已受理 😀"}}


async def test_token_is_cached_and_reused(api: WechatApi, state: FakeWechatState, cache: DictCache) -> None:
    for i in range(3):
        assert (await api.send_text(OPENID, f"第{i}条")).ok
    assert len(state.tokens_issued) == 1 and state.send_attempts == 3
    [(key, ttl)] = cache.sets
    assert APP_ID in key
    assert state.expires_in - 600 <= ttl < state.expires_in  # refreshed shortly before WeChat expires it


async def test_workers_sharing_the_cache_share_one_token(make_api: Callable[..., WechatApi],
                                                        state: FakeWechatState) -> None:
    first, second = make_api(), make_api()
    assert (await first.send_text(OPENID, "a")).ok
    assert (await second.send_text(OPENID, "b")).ok
    assert len(state.tokens_issued) == 1


async def test_concurrent_sends_fetch_one_token(api: WechatApi, state: FakeWechatState) -> None:
    results = await asyncio.gather(*(api.send_text(OPENID, f"m{i}") for i in range(5)))
    assert all(r.ok for r in results)
    assert state.token_requests == 1 and len(state.messages) == 5


async def test_token_is_renewed_before_it_expires(api: WechatApi, state: FakeWechatState,
                                                  fake_time: FakeTime) -> None:
    assert (await api.send_text(OPENID, "a")).ok
    fake_time.now += state.expires_in - 60  # inside our safety margin, still valid at WeChat
    state.customer_wrote(OPENID)
    assert (await api.send_text(OPENID, "b")).ok
    assert len(state.tokens_issued) == 2
    assert state.send_attempts == 2  # no send was spent on a rejected token


async def test_expired_token_is_refreshed_once_and_the_send_retried(api: WechatApi, state: FakeWechatState) -> None:
    assert (await api.send_text(OPENID, "a")).ok
    state.expire_current_token()
    assert (await api.send_text(OPENID, "b")).ok
    assert len(state.tokens_issued) == 2
    assert state.send_attempts == 3 and [m.content for m in state.messages] == ["a", "b"]


async def test_token_invalidated_by_a_fetch_elsewhere_is_refreshed(api: WechatApi, state: FakeWechatState,
                                                                    fake_time: FakeTime) -> None:
    assert (await api.send_text(OPENID, "a")).ok
    state.issue_token()  # someone else fetched a token with our secret
    fake_time.now += state.grace_seconds + 1
    state.customer_wrote(OPENID)
    result = await api.send_text(OPENID, "b")
    assert result.ok and len(state.tokens_issued) == 3 and state.send_attempts == 3


async def test_concurrent_rejections_share_one_refresh(api: WechatApi, state: FakeWechatState) -> None:
    assert (await api.send_text(OPENID, "a")).ok
    state.expire_current_token()
    results = await asyncio.gather(*(api.send_text(OPENID, f"m{i}") for i in range(4)))
    assert all(r.ok for r in results)
    assert len(state.tokens_issued) == 2  # the others saw the refreshed token in the cache


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
async def test_refresh_happens_only_once(api: WechatApi, state: FakeWechatState, errcode: int) -> None:
    state.fail_next(errcode, "token rejected", times=5)
    result = await api.send_text(OPENID, "a")
    assert not result.ok and result.errcode == errcode
    assert state.token_requests == 2 and state.send_attempts == 2
    assert state.messages == []


# --- errors that are not retried ------------------------------------------------------------------------


async def test_outside_the_48_hour_window_is_reported_not_retried(api: WechatApi, state: FakeWechatState,
                                                                  fake_time: FakeTime) -> None:
    state.customer_wrote(OPENID, at=fake_time() - 49 * 3600)
    result = await api.send_text(OPENID, "回访")
    assert not result.ok and result.outside_window and result.errcode == OUTSIDE_WINDOW
    assert state.send_attempts == 1 and state.token_requests == 1


async def test_unknown_openid_is_outside_the_window(api: WechatApi, state: FakeWechatState) -> None:
    result = await api.send_text("o-never-wrote", "hi")
    assert result.outside_window and state.send_attempts == 1


async def test_inside_the_window_is_sent(api: WechatApi, state: FakeWechatState, fake_time: FakeTime) -> None:
    state.customer_wrote(OPENID, at=fake_time() - 47 * 3600)
    assert (await api.send_text(OPENID, "回访")).ok


async def test_other_errors_are_returned_and_logged(api: WechatApi, state: FakeWechatState,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    state.fail_next(45047, "out of response count limit")
    with caplog.at_level(logging.WARNING, logger="adapters.wechat_api"):
        result = await api.send_text(OPENID, "a")
    assert (result.ok, result.errcode, result.outside_window) == (False, 45047, False)
    assert "out of response count limit" in result.errmsg
    assert state.send_attempts == 1
    assert any("45047" in r.getMessage() and mask_id(OPENID) in r.getMessage() for r in caplog.records)
    assert not any(OPENID in r.getMessage() for r in caplog.records), "openids are masked in logs"


async def test_too_long_text_is_refused_by_the_fake_like_wechat(api: WechatApi, state: FakeWechatState) -> None:
    result = await api.send_text(OPENID, "退" * 700)  # 2,100 bytes
    assert (result.ok, result.errcode) == (False, 45002)


@pytest.mark.parametrize("text", ["", "  \n"])
async def test_empty_text_is_not_sent(api: WechatApi, state: FakeWechatState, text: str) -> None:
    result = await api.send_text(OPENID, text)
    assert (result.ok, result.errcode) == (False, 44004)
    assert state.token_requests == 0 and state.send_attempts == 0


@pytest.mark.parametrize(("app_id", "secret", "errcode"), [
    ("wx00000000000000ff", SECRET, 40013),
    (APP_ID, "wrong-secret", 40125),
])
async def test_bad_credentials_give_a_result_and_no_send(make_api: Callable[..., WechatApi], state: FakeWechatState,
                                                         app_id: str, secret: str, errcode: int) -> None:
    result = await make_api(app_id=app_id, app_secret=secret).send_text(OPENID, "a")
    assert (result.ok, result.errcode) == (False, errcode)
    assert result.errmsg.startswith("access token:")
    assert state.send_attempts == 0


def test_credentials_are_required(session: aiohttp.ClientSession, cache: DictCache, fake_time: FakeTime) -> None:
    with pytest.raises(ValueError, match="secret"):
        WechatApi(session, api_base="http://127.0.0.1:1", app_id=APP_ID, app_secret="", cache=cache, clock=fake_time)


# --- transport failures ---------------------------------------------------------------------------------


async def test_timeout_is_a_result_not_an_exception(make_api: Callable[..., WechatApi],
                                                    state: FakeWechatState) -> None:
    api = make_api(timeout_seconds=0.2)
    assert (await api.send_text(OPENID, "warm up the token")).ok
    state.stall()
    try:
        result = await api.send_text(OPENID, "slow")
    finally:
        state.release()
    assert (result.ok, result.errcode) == (False, TRANSPORT_ERROR)
    assert "Timeout" in result.errmsg


async def test_unreachable_api_is_a_result(make_api: Callable[..., WechatApi]) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await make_api(api_base=f"http://127.0.0.1:{port}").send_text(OPENID, "a")
    assert (result.ok, result.errcode) == (False, TRANSPORT_ERROR)
    assert "ClientConnectorError" in result.errmsg


async def test_non_json_answer_is_a_result(make_api: Callable[..., WechatApi], server: TestServer) -> None:
    result = await make_api(api_base=base_url(server) + "nowhere").send_text(OPENID, "a")
    assert (result.ok, result.errcode, result.errmsg) == (False, TRANSPORT_ERROR, "/cgi-bin/token: HTTP 404")


async def test_broken_cache_entry_is_ignored(api: WechatApi, state: FakeWechatState, cache: DictCache,
                                             fake_time: FakeTime) -> None:
    cache.values["wechat:access_token:" + APP_ID] = ("not json", fake_time() + 100)
    assert (await api.send_text(OPENID, "a")).ok
    assert len(state.tokens_issued) == 1


async def test_token_expiry_follows_our_clock_even_if_the_cache_keeps_it(api: WechatApi, state: FakeWechatState,
                                                                          cache: DictCache, fake_time: FakeTime) -> None:
    assert (await api.send_text(OPENID, "a")).ok
    key, (value, _) = next(iter(cache.values.items()))
    cache.values[key] = (value, fake_time() + 10 * state.expires_in)  # a store whose TTL runs long
    fake_time.now += state.expires_in
    state.customer_wrote(OPENID)
    assert (await api.send_text(OPENID, "b")).ok
    assert len(state.tokens_issued) == 2 and state.send_attempts == 2


# --- secrets stay out of logs ---------------------------------------------------------------------------


async def redirect_forever(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.rel_url)


async def test_secret_and_tokens_never_reach_the_logs(make_api: Callable[..., WechatApi], state: FakeWechatState,
                                                      aiohttp_server: ServerFactory, cache: DictCache,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    # A redirect loop ends in an error whose text holds the full URL, query string (and secret) included.
    loop_app = web.Application()
    loop_app.router.add_route("*", "/{path:.*}", redirect_forever)
    loop_server = await aiohttp_server(loop_app)
    api = make_api(timeout_seconds=0.2)
    with caplog.at_level(logging.DEBUG):
        await api.send_text(OPENID, "a")
        state.expire_current_token()
        await api.send_text(OPENID, "b")
        state.fail_next(40001, times=2)
        await api.send_text(OPENID, "c")
        await api.send_text("o-never-wrote", "d")
        state.stall()
        try:
            await api.send_text(OPENID, "e")
        finally:
            state.release()
        cache.values.clear()  # the next two must fetch a token themselves
        await make_api(app_secret=SECRET + "x").send_text(OPENID, "f")
        await make_api(api_base=base_url(loop_server)).send_text(OPENID, "g")  # the token URL loops
        await make_api().send_text(OPENID, "h")
        await make_api(api_base=base_url(loop_server)).send_text(OPENID, "i")  # the send URL loops
    # The fake server's own access log prints its request lines, as Tencent's would; only the client counts.
    client = [r for r in caplog.records if r.name != "aiohttp.access"]
    logged = " ".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in client)
    assert len(client) >= 8
    assert "invalid appsecret" in logged and "secret=***" in logged and "access_token=***" in logged
    assert SECRET not in logged
    assert state.tokens_issued and not any(t in logged for t in state.tokens_issued)


# --- the fake checks requests like the real API ----------------------------------------------------------


async def post_raw(session: aiohttp.ClientSession, server: TestServer, token: str, body: bytes) -> int:
    async with session.post(server.make_url("/cgi-bin/message/custom/send"), params={"access_token": token},
                            data=body) as resp:
        errcode: int = (await resp.json(content_type=None))["errcode"]
        return errcode


async def test_fake_refuses_bad_requests(session: aiohttp.ClientSession, server: TestServer,
                                         state: FakeWechatState) -> None:
    token = state.issue_token()
    good = {"touser": OPENID, "msgtype": "text", "text": {"content": "hi"}}
    assert await post_raw(session, server, token, json.dumps(good).encode()) == 0
    assert await post_raw(session, server, token, b"") == 44002
    assert await post_raw(session, server, token, b"{not json") == 47001
    assert await post_raw(session, server, token, json.dumps({"msgtype": "text"}).encode()) == 47001
    assert await post_raw(session, server, token, json.dumps({**good, "text": {}}).encode()) == 47001
    assert await post_raw(session, server, token, json.dumps({**good, "msgtype": "image"}).encode()) == 40008
    assert await post_raw(session, server, "made-up-token", json.dumps(good).encode()) == 40001
    assert await post_raw(session, server, "", json.dumps(good).encode()) == 41001
    async with session.get(server.make_url("/cgi-bin/token"),
                           params={"grant_type": "password", "appid": APP_ID, "secret": SECRET}) as resp:
        assert (await resp.json(content_type=None))["errcode"] == 40002


async def test_token_shared_through_the_projects_store(session: aiohttp.ClientSession, server: TestServer,
                                                       state: FakeWechatState, fake_time: FakeTime) -> None:
    store = SqliteStore(":memory:", FakeClock(datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)))
    try:
        cache: TokenCache = store  # the store the app passes in satisfies the Protocol (checked by mypy)
        workers = [WechatApi(session, api_base=base_url(server), app_id=APP_ID, app_secret=SECRET, cache=cache,
                             clock=fake_time) for _ in range(2)]
        assert all([(await w.send_text(OPENID, "a")).ok for w in workers])
        assert len(state.tokens_issued) == 1
    finally:
        await store.close()
