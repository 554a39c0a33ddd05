"""A local fake of Tencent's token and customer-service endpoints that checks requests like the real ones.

Run it with `aiohttp_server(make_fake_wechat_api(...))` and point `api_base` at it; inspect or steer it
through `app[FAKE_WECHAT_STATE]`. Error codes and messages follow Tencent's global return codes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WINDOW_SECONDS = 48 * 3600  # customer-service pushes are allowed this long after the customer's last message
TEXT_LIMIT_BYTES = 2048


@dataclass(frozen=True)
class ReceivedMessage:
    touser: str
    content: str
    body: bytes  # exactly as posted, to check the encoding on the wire


@dataclass
class FakeWechatState:
    """What the fake has seen and the knobs that steer it; its clock is the one the window and expiry use."""

    app_id: str
    app_secret: str
    clock: Callable[[], float]
    expires_in: int = 7200
    grace_seconds: float = 300.0  # after a new fetch the previous token keeps working this long, as on WeChat
    tokens_issued: list[str] = field(default_factory=list)
    token_requests: int = 0
    send_attempts: int = 0
    messages: list[ReceivedMessage] = field(default_factory=list)
    last_customer_message: dict[str, float] = field(default_factory=dict)
    _valid_until: dict[str, float] = field(default_factory=dict)
    _expired: set[str] = field(default_factory=set)
    forced: list[tuple[int, str]] = field(default_factory=list)  # errors for the next sends, in order
    released: asyncio.Event = field(default_factory=asyncio.Event)  # cleared by stall()

    def __post_init__(self) -> None:
        self.released.set()

    def customer_wrote(self, openid: str, at: float | None = None) -> None:
        """Open the 48-hour window for `openid`, as a message from them would."""
        self.last_customer_message[openid] = self.clock() if at is None else at

    def expire_current_token(self) -> None:
        """Make the newest token answer 42001, as when its two hours ran out."""
        self._expired.add(self.tokens_issued[-1])

    def fail_next(self, errcode: int, errmsg: str = "forced by test", *, times: int = 1) -> None:
        """Answer the next `times` authenticated sends with this error instead of delivering."""
        self.forced.extend([(errcode, errmsg)] * times)

    def stall(self) -> None:
        """Hold every send until release(): lets a client's timeout fire."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def issue_token(self) -> str:
        now = self.clock()
        for old, until in self._valid_until.items():
            self._valid_until[old] = min(until, now + self.grace_seconds)
        token = secrets.token_urlsafe(48)
        self.tokens_issued.append(token)
        self._valid_until[token] = now + self.expires_in
        return token

    def token_error(self, token: str | None) -> tuple[int, str] | None:
        if not token:
            return 41001, "access_token missing"
        if token not in self._valid_until:
            return 40001, "invalid credential, access_token is invalid or not latest"
        if token in self._expired or self.clock() >= self._valid_until[token]:
            # A superseded token past its grace reads "not latest"; one past its two hours, "expired".
            if token in self._expired or token == self.tokens_issued[-1]:
                return 42001, "access_token expired"
            return 40001, "invalid credential, access_token is invalid or not latest"
        return None


FAKE_WECHAT_STATE = web.AppKey("fake_wechat_state", FakeWechatState)


def _answer(data: dict[str, Any]) -> web.Response:
    # WeChat labels its JSON "encoding=utf-8" rather than charset; clients must not rely on the header.
    return web.Response(body=json.dumps(data, ensure_ascii=False).encode("utf-8"),
                        headers={"Content-Type": "application/json; encoding=utf-8"})


def _error(code: int, msg: str) -> web.Response:
    return _answer({"errcode": code, "errmsg": f"{msg} rid: {secrets.token_hex(6)}"})


async def _token(request: web.Request) -> web.Response:
    state = request.app[FAKE_WECHAT_STATE]
    state.token_requests += 1
    q = request.query
    if q.get("grant_type") != "client_credential":
        return _error(40002, "invalid grant_type")
    if not q.get("appid"):
        return _error(41002, "appid missing")
    if q["appid"] != state.app_id:
        return _error(40013, "invalid appid")
    if not q.get("secret"):
        return _error(41004, "appsecret missing")
    if q["secret"] != state.app_secret:
        return _error(40125, "invalid appsecret")
    return _answer({"access_token": state.issue_token(), "expires_in": state.expires_in})


class _Refused(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def _text_message(body: bytes) -> tuple[str, str]:
    """(touser, content) of a valid text send; _Refused with WeChat's code otherwise."""
    if not body.strip():
        raise _Refused(44002, "empty post data")
    try:
        data = json.loads(body)
    except ValueError:
        raise _Refused(47001, "data format error") from None
    if not isinstance(data, dict) or not isinstance(data.get("touser"), str) or not data.get("msgtype"):
        raise _Refused(47001, "data format error")
    if data["msgtype"] != "text":
        raise _Refused(40008, "invalid message type")
    text = data.get("text")
    if not isinstance(text, dict) or not isinstance(text.get("content"), str):
        raise _Refused(47001, "data format error")
    content: str = text["content"]
    if not content:
        raise _Refused(44004, "empty content")
    if len(content.encode("utf-8")) > TEXT_LIMIT_BYTES:
        raise _Refused(45002, "content size out of limit")
    return data["touser"], content


async def _send(request: web.Request) -> web.Response:
    state = request.app[FAKE_WECHAT_STATE]
    state.send_attempts += 1
    problem = state.token_error(request.query.get("access_token"))
    if problem:
        return _error(*problem)
    await state.released.wait()
    if state.forced:
        return _error(*state.forced.pop(0))
    body = await request.read()
    try:
        touser, content = _text_message(body)
    except _Refused as refused:
        return _error(refused.errcode, refused.errmsg)
    last = state.last_customer_message.get(touser)
    if last is None or state.clock() - last > WINDOW_SECONDS:
        return _error(45015, "response out of time limit or subscription is canceled")
    state.messages.append(ReceivedMessage(touser, content, body))
    return _answer({"errcode": 0, "errmsg": "ok"})


def make_fake_wechat_api(app_id: str, app_secret: str, *,
                         clock: Callable[[], float] = time.time) -> web.Application:
    """The fake as an aiohttp app; its state is `app[FAKE_WECHAT_STATE]`."""
    app = web.Application()
    app[FAKE_WECHAT_STATE] = FakeWechatState(app_id, app_secret, clock)
    app.router.add_get("/cgi-bin/token", _token)
    app.router.add_post("/cgi-bin/message/custom/send", _send)
    return app
