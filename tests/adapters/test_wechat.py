"""The WeChat channel end to end: signed (and encrypted) callbacks posted to the running app on loopback,
the local fake of Tencent's API for pushes, a real SQLite store in tmp_path. Every test checks what the
customer gets (the passive XML and the API pushes) and what the store holds."""

from __future__ import annotations

import asyncio
import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from adapters import wechat_xml
from adapters.wechat import CHANNEL, REST_DELAY_SECONDS, to_incoming, unix_clock, wechat_texts
from adapters.wechat_crypto import WechatCrypto
from adapters.wechat_xml import TEXT_LIMIT_BYTES, WechatMessage
from bot import appkeys
from bot.app import create_app
from bot.auth import create_agent
from bot.handoff import console_item
from bot.config import Settings
from bot.models import Event, FaqEntry, Reply, Suggestion
from bot.replies import ReplyRenderer
from bot.storage.base import StoreError
from bot.storage.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.fake_wechat_api import FAKE_WECHAT_STATE, FakeWechatState, make_fake_wechat_api
from tests.fakes import FakeClock

TOKEN = "kefuTestToken42"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx0123456789abcdef"
SECRET = "app-secret-for-tests"
ACCOUNT = "gh_0123456789ab"
CSRF = {"X-Requested-With": "kefu"}
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


class GatedStore(SqliteStore):
    """The real SQLite store with two test hooks on append: hold it (a slow engine) or fail it (an outage)."""

    gate: asyncio.Event | None = None
    failing = False

    async def append(self, conversation_id: str, events: Sequence[Event], **kw: Any) -> list[Event]:
        if self.failing:
            raise StoreError("disk unavailable (test)")
        if self.gate is not None:
            await self.gate.wait()
        return await super().append(conversation_id, events, **kw)


@dataclass
class Answer:
    status: int
    body: str
    content_type: str

    @property
    def fields(self) -> dict[str, str]:
        return {child.tag: child.text or "" for child in ET.fromstring(self.body)}

    @property
    def content(self) -> str:
        assert self.status == 200 and self.body.startswith("<xml>"), (self.status, self.body)
        return self.fields["Content"]


@dataclass
class Harness:
    """One running app with its WeChat channel, the fake API it pushes to, and the store behind it."""

    client: TestClient[Any, Any]
    store: GatedStore
    fake: FakeWechatState
    clock: FakeClock
    settings: Settings
    crypto: WechatCrypto

    @property
    def app(self) -> web.Application:
        return self.client.server.app  # type: ignore[no-any-return]

    @property
    def path(self) -> str:
        return self.settings.channels.wechat.path

    def query(self, *, timestamp: int | None = None, nonce: str = "1320562132", token: str = TOKEN
              ) -> dict[str, str]:
        ts = str(int(self.clock.now().timestamp()) if timestamp is None else timestamp)
        signature = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
        return {"signature": signature, "timestamp": ts, "nonce": nonce}

    async def post(self, body: bytes | str, *, encrypt: bool = False, params: dict[str, str] | None = None,
                   **query: Any) -> Answer:
        """Post a callback as WeChat does: signed query, optionally the safe-mode envelope."""
        raw = body.encode() if isinstance(body, str) else body
        q = params if params is not None else self.query(**query)
        if encrypt:
            encrypted = self.crypto.encrypt(raw)
            q = {**q, "encrypt_type": "aes", "openid": "ignored",
                 "msg_signature": wechat_xml.msg_signature(TOKEN, q["timestamp"], q["nonce"], encrypted)}
            raw = (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
                   f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
        resp = await self.client.post(self.path, params=q, data=raw)
        return Answer(resp.status, await resp.text(), resp.content_type)

    async def say(self, openid: str, text: str, msg_id: int, **kw: Any) -> Answer:
        """A customer's text message; like Tencent, it opens their 48-hour window on the fake API."""
        self.fake.customer_wrote(openid)
        return await self.post(message(openid, "text", Content=text, MsgId=str(msg_id),
                                       create_time=self.now()), **kw)

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    async def events(self, openid: str, type_: str | None = None) -> list[Event]:
        events = await self.store.events(f"{CHANNEL}:{openid}")
        return [e for e in events if type_ is None or e.type == type_]

    def pushed(self, openid: str | None = None) -> list[str]:
        return [m.content for m in self.fake.messages if openid is None or m.touser == openid]

    async def settle(self) -> None:
        """Wait for the channel's background work (engine runs, API pushes) to finish."""
        await self.app[appkeys.WECHAT].drain()


def message(openid: str, msg_type: str, *, create_time: int, to: str = ACCOUNT, **fields: str) -> str:
    extra = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{extra}</xml>")


MakeHarness = Callable[..., Awaitable[Harness]]


async def no_pause(_seconds: float) -> None:
    """The channel's waits before a push, taken at once: tests do not sleep."""
    await asyncio.sleep(0)


@pytest.fixture
async def make_harness(aiohttp_server: ServerFactory, aiohttp_client: AiohttpClient, settings: Settings,
                       clock: FakeClock, tmp_path: Path) -> AsyncIterator[MakeHarness]:
    stores: list[GatedStore] = []

    async def make(mode: str = "plain", deadline: float = 4.0, **shop: Any) -> Harness:
        fake_app = make_fake_wechat_api(APP_ID, SECRET, clock=unix_clock(clock))
        fake_server = await aiohttp_server(fake_app)
        wechat = replace(settings.channels.wechat, enabled=True, app_id=APP_ID, account_id=ACCOUNT, mode=mode,
                         api_base=str(fake_server.make_url("/")), reply_deadline_seconds=deadline,
                         menu={"RETURNS": "zh-returns-7day", "HUMAN": "人工", "LONG": "zh-long-manual"})
        conf = replace(settings, channels=replace(settings.channels, wechat=wechat),
                       shop=replace(settings.shop, **shop),
                       secrets=replace(settings.secrets, wechat_token=TOKEN, wechat_app_secret=SECRET,
                                       wechat_encoding_aes_key=AES_KEY))
        store = GatedStore(str(tmp_path / f"kefu-{len(stores)}.sqlite3"), clock)
        stores.append(store)
        client = await aiohttp_client(create_app(conf, store=store, clock=clock))
        harness = Harness(client, store, fake_app[FAKE_WECHAT_STATE], clock, conf, WechatCrypto(TOKEN, AES_KEY, APP_ID))
        harness.app[appkeys.WECHAT].pause = no_pause
        return harness

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def wx(make_harness: MakeHarness) -> Harness:
    return await make_harness()


# -- URL verification and authentication ----------------------------------------------------------------

async def test_url_verification_echoes_echostr_only_for_a_good_signature(wx: Harness) -> None:
    resp = await wx.client.get(wx.path, params={**wx.query(), "echostr": "5837397520665436492"})
    assert resp.status == 200 and await resp.text() == "5837397520665436492"
    bad = await wx.client.get(wx.path, params={**wx.query(token="other"), "echostr": "1"})
    assert bad.status == 403
    stale = await wx.client.get(wx.path, params={**wx.query(timestamp=wx.now() - 601), "echostr": "1"})
    assert stale.status == 403
    assert (await wx.client.get(wx.path, params=wx.query())).status == 400


@pytest.mark.parametrize("case", ["wrong_token", "stale", "future", "missing", "not_digits", "superscript_digit"])
async def test_unauthenticated_posts_are_refused_and_nothing_is_stored(wx: Harness, case: str) -> None:
    q = {
        "wrong_token": wx.query(token="attacker"),
        "stale": wx.query(timestamp=wx.now() - 601),
        "future": wx.query(timestamp=wx.now() + 601),
        "missing": {},
        "not_digits": {**wx.query(), "timestamp": "12ab"},
        "superscript_digit": {**wx.query(), "timestamp": "²"},  # str.isdigit() says yes, int() said 500
    }[case]
    answer = await wx.post(message("o-eve", "text", Content="可以开发票吗", MsgId="1", create_time=wx.now()),
                           params=q)
    assert answer.status == 403
    assert await wx.store.conversations() == [] and wx.pushed() == []


async def test_timestamp_just_inside_the_skew_is_accepted(wx: Harness) -> None:
    answer = await wx.say("o-late", "可以开发票吗", 11, timestamp=wx.now() - 600)
    assert answer.status == 200 and "发票" in answer.content


HOSTILE = {
    "billion_laughs": ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                       '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                       '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                       f'<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>o-eve</FromUserName>'
                       '<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol3;</Content>'
                       '<MsgId>9</MsgId></xml>'),
    "xxe_file": ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                 f'<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>o-eve</FromUserName>'
                 '<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content><MsgId>9</MsgId></xml>'),
    "external_dtd": ('<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd">'
                     f'<xml><ToUserName>{ACCOUNT}</ToUserName></xml>'),
    "malformed": "<xml><ToUserName>gh_x</ToUserName><Content>",
    "not_xml": "hello",
    "empty": "",
    "wrong_root": "<html><body/></html>",
    "missing_fields": f"<xml><ToUserName>{ACCOUNT}</ToUserName><MsgType>text</MsgType></xml>",
    "bad_create_time": message("o-eve", "text", Content="hi", MsgId="9", create_time=0).replace(
        "<CreateTime>0</CreateTime>", "<CreateTime>yesterday</CreateTime>"),
    "other_account": message("o-eve", "text", Content="hi", MsgId="9", create_time=1, to="gh_someone_else"),
    "gbk_declared": '<?xml version="1.0" encoding="GBK"?>' + message("o-eve", "text", Content="hi", MsgId="9",
                                                                     create_time=1),
    "unknown_encoding": '<?xml version="1.0" encoding="x-nope"?><xml><ToUserName>gh_x</ToUserName></xml>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "inside_encrypt"])
async def test_hostile_or_malformed_bodies_get_400_and_nothing_is_stored(make_harness: MakeHarness, name: str,
                                                                         encrypt: bool) -> None:
    wx = await make_harness("compatible")
    started = time.monotonic()
    answer = await wx.post(HOSTILE[name], encrypt=encrypt)
    assert answer.status == 400, answer.body
    assert time.monotonic() - started < 2  # refused up front, never expanded
    assert "root:" not in answer.body and "lol" not in answer.body
    assert await wx.store.conversations() == [] and wx.pushed() == []


async def test_oversize_bodies_get_413_declared_or_streamed(wx: Harness) -> None:
    limit = wx.settings.server.max_body_bytes
    big = message("o-big", "text", Content="大" * (limit // 3 + 10), MsgId="1", create_time=wx.now())
    assert (await wx.post(big)).status == 413

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse up front
        data = big.encode()
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]

    resp = await wx.client.post(wx.path, params=wx.query(), data=chunks())
    assert resp.status == 413
    assert await wx.store.conversations() == []


# -- safe and compatible modes --------------------------------------------------------------------------

def decrypt_reply(wx: Harness, answer: Answer) -> dict[str, str]:
    """Check the encrypted reply's own signature, then open it."""
    assert answer.status == 200, answer.body
    f = answer.fields
    assert set(f) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert f["MsgSignature"] == wechat_xml.msg_signature(TOKEN, f["TimeStamp"], f["Nonce"], f["Encrypt"])
    inner = wx.crypto.verify_and_decrypt(f["MsgSignature"], f["TimeStamp"], f["Nonce"], f["Encrypt"])
    return {child.tag: child.text or "" for child in ET.fromstring(inner)}


async def test_safe_mode_encrypted_request_gets_an_encrypted_reply(make_harness: MakeHarness) -> None:
    wx = await make_harness("safe")
    wx.fake.customer_wrote("o-safe")
    answer = await wx.post(message("o-safe", "text", Content="七天无理由退货怎么申请", MsgId="501",
                                   create_time=wx.now()), encrypt=True)
    inner = decrypt_reply(wx, answer)
    assert inner["ToUserName"] == "o-safe" and inner["FromUserName"] == ACCOUNT
    assert inner["MsgType"] == "text" and "【签收后7天内无理由退货】" in inner["Content"]
    assert "**" not in inner["Content"]
    assert abs(int(inner["CreateTime"]) - wx.now()) <= 1
    assert [e.data["text"] for e in await wx.events("o-safe", "customer_message")] == ["七天无理由退货怎么申请"]


async def test_safe_mode_refuses_plaintext_and_forged_encryption(make_harness: MakeHarness) -> None:
    wx = await make_harness("safe")
    body = message("o-x", "text", Content="你好", MsgId="502", create_time=wx.now())
    assert (await wx.post(body)).status == 403  # plaintext: its signature does not cover the body
    q = wx.query()
    encrypted = wx.crypto.encrypt(body.encode())
    forged = {**q, "encrypt_type": "aes", "msg_signature": "0" * 40}
    envelope = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert (await wx.post(envelope, params=forged)).status == 403
    other_app = WechatCrypto(TOKEN, AES_KEY, "wxffffffffffffffff").encrypt(body.encode())
    signed = {**q, "encrypt_type": "aes",
              "msg_signature": wechat_xml.msg_signature(TOKEN, q["timestamp"], q["nonce"], other_app)}
    assert (await wx.post(f"<xml><Encrypt><![CDATA[{other_app}]]></Encrypt></xml>", params=signed)).status == 400
    assert await wx.store.conversations() == []


async def test_compatible_mode_answers_each_request_in_its_own_form(make_harness: MakeHarness) -> None:
    wx = await make_harness("compatible")
    plain = await wx.say("o-compat", "多久发货", 601)
    assert "48小时内" in plain.content
    wx.fake.customer_wrote("o-compat")
    enc = await wx.post(message("o-compat", "text", Content="保修多久", MsgId="602", create_time=wx.now()),
                        encrypt=True)
    assert "3年质保" in decrypt_reply(wx, enc)["Content"]


async def test_plain_mode_refuses_encrypted_requests(wx: Harness) -> None:
    answer = await wx.post(message("o-p", "text", Content="hi", MsgId="1", create_time=wx.now()), encrypt=True)
    assert answer.status == 400


# -- message and event types ---------------------------------------------------------------------------

async def test_text_answer_is_plain_text_addressed_back_to_the_customer(wx: Harness) -> None:
    answer = await wx.say("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "退货运费谁出", 1001)
    f = answer.fields
    assert answer.content_type == "application/xml"
    assert f["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs" and f["FromUserName"] == ACCOUNT
    assert f["MsgType"] == "text" and int(f["CreateTime"]) == wx.now()
    content = f["Content"]
    assert content.startswith("您好，欢迎光临【家居电器旗舰店】")
    assert "【由本店承担】" in content and "\n1. " in content and "**" not in content and "<" not in content
    stored = await wx.events("oyORnuP8q7ou2gfYjqLzSIWZf0rs")
    assert [e.type for e in stored][:2] == ["customer_message", "bot_reply"]
    assert stored[0].data["channel_msg_id"] == "1001" and stored[0].data["kind"] == "text"
    assert stored[1].data["text"].startswith("您好") and stored[1].data["faq_id"] == "zh-returns-shipping-fee"


async def test_voice_with_recognition_is_answered_as_text(wx: Harness) -> None:
    wx.fake.customer_wrote("o-voice")
    body = message("o-voice", "voice", MediaId="m1", Format="amr", Recognition="多久发货", MsgId="1101",
                   create_time=wx.now())
    assert "48小时内" in (await wx.post(body)).content
    [msg] = await wx.events("o-voice", "customer_message")
    assert msg.data["kind"] == "text" and msg.data["text"] == "多久发货"


MEDIA = {
    "image": {"PicUrl": "http://mmbiz.qpic.cn/x.jpg", "MediaId": "m"},
    "voice": {"MediaId": "m", "Format": "amr"},
    "video": {"MediaId": "m", "ThumbMediaId": "t"},
    "shortvideo": {"MediaId": "m", "ThumbMediaId": "t"},
    "location": {"Location_X": "23.134521", "Location_Y": "113.358803", "Scale": "20", "Label": "广州市天河区"},
    "link": {"Title": "Order screenshot", "Description": "d", "Url": "https://example.com/a"},
    "file": {"Title": "发票.pdf", "FileKey": "k", "FileMd5": "x", "FileTotalLen": "100"},
    "miniprogrampage": {"Title": "shop", "AppId": "wx1"},
}


@pytest.mark.parametrize("kind", sorted(MEDIA))
async def test_media_and_unknown_types_get_a_polite_chinese_acknowledgement(wx: Harness, kind: str) -> None:
    openid = f"o-{kind}"
    wx.fake.customer_wrote(openid)
    answer = await wx.post(message(openid, kind, MsgId=f"12{len(kind)}", create_time=wx.now(), **MEDIA[kind]))
    content = answer.content
    assert "已收到您发送的" in content and "文字" in content
    [msg] = await wx.events(openid, "customer_message")
    assert msg.data["kind"] == (kind if kind != "miniprogrampage" else "unknown")
    # What the agent needs to see of it is kept and shown in the console.
    shown = {"image": {"pic_url": "http://mmbiz.qpic.cn/x.jpg", "media_id": "m"},
             "location": {"label": "广州市天河区", "latitude": "23.134521", "longitude": "113.358803"},
             "link": {"title": "Order screenshot", "url": "https://example.com/a"}}.get(kind, {})
    item = console_item(msg)
    assert item is not None and shown.items() <= item.get("media", {}).items()


async def test_subscribe_gets_the_welcome_menu_and_a_number_picks_from_it(make_harness: MakeHarness) -> None:
    wx = await make_harness(welcome_questions=("zh-returns-7day", "zh-logistics-ship-time"))
    wx.fake.customer_wrote("o-new")
    welcome = (await wx.post(message("o-new", "event", Event="subscribe", EventKey="qrscene_42",
                                     create_time=wx.now()))).content
    assert "欢迎关注【家居电器旗舰店】" in welcome
    assert "1. 七天无理由退货怎么申请" in welcome and "2. " in welcome
    assert welcome.endswith("也可以直接输入您的问题，需要人工服务请回复“人工”。")  # 也: besides the numbers
    assert "48小时内" in (await wx.say("o-new", "2", 1301)).content
    [sub, _] = await wx.events("o-new", "customer_message")
    assert sub.data["kind"] == "subscribe" and sub.data["channel_msg_id"] == f"o-new:{wx.now()}:subscribe:qrscene_42"


async def test_subscribe_without_welcome_questions_asks_for_the_question(wx: Harness) -> None:
    """The shipped config offers no menu: nothing for an "also" (也可以) to refer to."""
    assert wx.settings.shop.welcome_questions == ()
    welcome = (await wx.post(message("o-plain", "event", Event="subscribe", create_time=wx.now()))).content
    assert welcome == ("您好，欢迎关注【家居电器旗舰店】！我是智能客服，很高兴为您服务。\n"
                       "请直接输入您的问题，需要人工服务请回复“人工”。")


@pytest.mark.parametrize(("questions", "last_line"), [
    ([], 'Please type your question, or reply "agent" to talk to a person.'),
    (["How do I return an item?"], 'You can also type your question, or reply "agent" to talk to a person.'),
])
def test_english_welcome_says_also_only_after_the_menu(questions: list[str], last_line: str) -> None:
    welcome = RENDERER.render("welcome", "en", shop_name="Home & Living Store", questions=questions)
    assert welcome.splitlines()[-1] == last_line
    assert ("1. How do I return an item?" in welcome) == bool(questions)


async def test_unsubscribe_is_recorded_and_answered_with_success(wx: Harness) -> None:
    answer = await wx.post(message("o-bye", "event", Event="unsubscribe", create_time=wx.now()))
    assert answer.status == 200 and answer.body == "success"
    assert [e.type for e in await wx.events("o-bye")] == ["customer_message", "unsubscribed"]


async def test_a_customer_who_unfollows_while_waiting_leaves_the_queue(wx: Harness) -> None:
    """Nobody can write to them any more: an agent must not claim the conversation in vain."""
    wx.fake.customer_wrote("o-gone")
    await wx.say("o-gone", "转人工", 7001)
    assert [c for c, _ in await wx.store.queue_items()] == ["wechat:o-gone"]
    await wx.post(message("o-gone", "event", Event="unsubscribe", create_time=wx.now() + 1))
    assert await wx.store.queue_items() == []
    assert [e.type for e in await wx.events("o-gone")][-2:] == ["unsubscribed", "handoff_cancelled"]


async def test_menu_clicks_map_through_config(wx: Harness) -> None:
    wx.fake.customer_wrote("o-menu")
    faq = await wx.post(message("o-menu", "event", Event="CLICK", EventKey="RETURNS", create_time=wx.now()))
    assert "【签收后7天内无理由退货】" in faq.content
    [reply] = await wx.events("o-menu", "bot_reply")
    assert reply.data["faq_id"] == "zh-returns-7day"
    human = await wx.post(message("o-menu", "event", Event="CLICK", EventKey="HUMAN", create_time=wx.now() + 1))
    assert "人工客服" in human.content
    assert (await wx.app[appkeys.ENGINE].state(CHANNEL, "o-menu")).status == "queued"
    unknown = await wx.post(message("o-menu", "event", Event="CLICK", EventKey="NOPE", create_time=wx.now() + 2))
    assert unknown.status == 200 and unknown.body  # acknowledged (or kept for the agent), never an error


async def test_events_that_are_not_the_customer_speaking_are_ignored(wx: Harness) -> None:
    for n, (event, key) in enumerate([("VIEW", "https://shop.example.com"), ("LOCATION", ""),
                                      ("TEMPLATESENDJOBFINISH", ""), ("SCAN", "42")]):
        answer = await wx.post(message("o-quiet", "event", Event=event, EventKey=key, create_time=wx.now() + n))
        assert (answer.status, answer.body) == (200, "success")
    assert await wx.store.conversations() == []


# -- retries, load and the slow path ------------------------------------------------------------------

async def test_a_retried_msgid_is_processed_once_and_never_doubled(wx: Harness) -> None:
    first = await wx.say("o-retry", "多久发货", 2001)
    again = [await wx.say("o-retry", "多久发货", 2001) for _ in range(3)]
    assert all(a.content == first.content for a in again)  # a retry gets the same reply
    assert len(await wx.events("o-retry", "customer_message")) == 1
    assert len(await wx.events("o-retry", "bot_reply")) == 1
    await wx.settle()
    assert wx.pushed() == []


async def test_concurrent_retries_are_processed_once(wx: Harness) -> None:
    wx.fake.customer_wrote("o-conc")
    body = message("o-conc", "text", Content="保修多久", MsgId="2101", create_time=wx.now())
    answers = await asyncio.gather(*(wx.post(body) for _ in range(4)))
    assert len({a.content for a in answers}) == 1 and "3年质保" in answers[0].content
    assert len(await wx.events("o-conc", "customer_message")) == 1
    await wx.settle()
    assert wx.pushed() == []


async def test_events_without_msgid_dedup_by_sender_and_time(wx: Harness) -> None:
    click = message("o-ev", "event", Event="CLICK", EventKey="RETURNS", create_time=wx.now())
    await wx.post(click)
    await wx.post(click)
    await wx.post(message("o-ev", "event", Event="CLICK", EventKey="RETURNS", create_time=wx.now() + 5))
    await wx.post(message("o-ev2", "event", Event="CLICK", EventKey="RETURNS", create_time=wx.now()))
    assert len(await wx.events("o-ev", "customer_message")) == 2
    assert len(await wx.events("o-ev2", "customer_message")) == 1


QUESTIONS = {"七天无理由退货怎么申请": "签收后7天内无理由退货", "退货运费谁出": "由本店承担", "多久发货": "48小时内",
             "保修多久": "3年质保", "How do I get an invoice?": "electronic general invoice"}


async def test_fifty_customers_at_once_each_get_their_own_answer(wx: Harness) -> None:
    items = list(QUESTIONS.items())
    asks = [(f"o-crowd-{i:02d}", *items[i % len(items)]) for i in range(50)]
    answers = await asyncio.gather(*(wx.say(openid, q, 3000 + i) for i, (openid, q, _) in enumerate(asks)))
    for (openid, _, expected), answer in zip(asks, answers):
        assert answer.fields["ToUserName"] == openid
        assert expected in answer.content, (openid, answer.content)
    for openid, question, _ in asks:
        stored = await wx.events(openid)
        assert [e.type for e in stored][:2] == ["customer_message", "bot_reply"]
        assert stored[0].data["text"] == question
    await wx.settle()
    assert wx.pushed() == []


async def test_slow_answer_is_success_then_pushed_once_by_api(make_harness: MakeHarness) -> None:
    wx = await make_harness(deadline=0.5)
    wx.store.gate = asyncio.Event()
    started = time.monotonic()
    first = await wx.say("o-slow", "保修多久", 4001)
    assert (first.status, first.body) == (200, "success")
    assert 0.45 < time.monotonic() - started < 2
    retry = await wx.say("o-slow", "保修多久", 4001)  # Tencent retries while the engine still works
    assert (retry.status, retry.body) == (200, "success")
    assert wx.pushed() == []
    wx.store.gate.set()
    await wx.settle()
    [pushed] = wx.pushed("o-slow")
    assert "【3年质保】" in pushed and "**" not in pushed
    late_retry = await wx.say("o-slow", "保修多久", 4001)
    assert late_retry.body == "success"  # already on its way by API: never a second copy
    await wx.settle()
    assert len(wx.pushed()) == 1
    assert len(await wx.events("o-slow", "customer_message")) == 1


async def late_answer_while_wechat_is_busy(make_harness: MakeHarness, openid: str, msg_id: int,
                                           busy_times: int) -> Harness:
    """A question answered after the deadline (so by API), while WeChat answers "system busy" `busy_times`."""
    wx = await make_harness(deadline=0.5)
    wx.app[appkeys.WECHAT].retry_pauses = (0.05, 0.05)
    wx.store.gate = asyncio.Event()
    assert (await wx.say(openid, "保修多久", msg_id)).body == "success"
    wx.fake.fail_next(-1, "system busy", times=busy_times)
    wx.store.gate.set()
    await wx.settle()
    return wx


async def test_a_late_answer_survives_wechat_being_busy_and_arrives_once(make_harness: MakeHarness) -> None:
    wx = await late_answer_while_wechat_is_busy(make_harness, "o-busy-late", 4051, busy_times=2)
    [pushed] = wx.pushed("o-busy-late")
    assert "【3年质保】" in pushed
    assert wx.fake.send_attempts == 3


async def test_a_late_answer_wechat_keeps_refusing_is_marked_undelivered_for_the_agents(
        make_harness: MakeHarness) -> None:
    wx = await late_answer_while_wechat_is_busy(make_harness, "o-never", 4061, busy_times=3)
    assert wx.pushed("o-never") == [] and wx.fake.send_attempts == 3
    types = [e.type for e in await wx.events("o-never")]
    assert types.index("delivery_failed") > types.index("bot_reply")
    [failed] = await wx.events("o-never", "delivery_failed")
    assert failed.data["errcode"] == -1
    item = console_item(failed)
    assert item is not None and item["from"] == "system" and item["errcode"] == -1


async def test_slow_answer_goes_passively_to_a_retry_that_arrives_once_it_is_ready(
        make_harness: MakeHarness) -> None:
    wx = await make_harness(deadline=0.5)
    wx.store.gate = asyncio.Event()
    first = await wx.say("o-slow2", "多久发货", 4101)
    assert first.body == "success"
    wx.store.gate.set()
    retry = await wx.say("o-slow2", "多久发货", 4101)
    await wx.settle()
    delivered = ([retry.content] if retry.body.startswith("<xml>") else []) + wx.pushed("o-slow2")
    assert len(delivered) == 1 and "48小时内" in delivered[0]


async def test_late_answers_are_pushed_before_shutdown(make_harness: MakeHarness) -> None:
    wx = await make_harness(deadline=0.5)
    wx.store.gate = asyncio.Event()
    assert (await wx.say("o-shut", "多久发货", 4201)).body == "success"
    wx.store.gate.set()
    await wx.client.close()  # cleanup: the channel drains before the HTTP session and the store close
    assert len(wx.pushed("o-shut")) == 1


async def test_store_outage_is_503_so_tencent_retries_and_the_retry_is_processed(wx: Harness) -> None:
    wx.store.failing = True
    outage = await wx.say("o-outage", "多久发货", 4301)
    assert outage.status == 503
    wx.store.failing = False
    retry = await wx.say("o-outage", "多久发货", 4301)
    assert "48小时内" in retry.content
    assert len(await wx.events("o-outage", "customer_message")) == 1


def long_manual_click(wx: Harness, openid: str) -> str:
    """A menu click answered by an entry of 30 long numbered steps: several WeChat messages' worth."""
    steps = [f"{n}. 第{n}步：请您按照说明书第{n}页的图示，把**部件{n}**对准卡槽后轻轻按下，听到咔哒声即安装到位。" * 2
             for n in range(1, 31)]
    wx.app[appkeys.ENGINE].upsert_entry(FaqEntry(id="zh-long-manual", question="超长安装说明",
                                                 answer="\n".join(steps)))
    wx.fake.customer_wrote(openid)
    return message(openid, "event", Event="CLICK", EventKey="LONG", create_time=wx.now())


async def test_long_answer_first_part_passive_rest_by_api_once(wx: Harness) -> None:
    click = long_manual_click(wx, "o-long")
    first = await wx.post(click)
    await wx.settle()
    parts = [first.content, *wx.pushed("o-long")]
    assert len(parts) >= 3
    assert all(len(p.encode()) <= TEXT_LIMIT_BYTES for p in parts)
    joined = "\n".join(parts)
    assert joined.index("第1步") < joined.index("第30步") and "【部件30】" in joined and "**" not in joined
    assert all(p[0].isdigit() for p in parts[1:-1])  # cut between numbered steps, never inside one
    assert parts[-1].endswith("请问还有什么可以帮您的吗？")
    assert (await wx.post(click)).content == first.content  # a retry: the same first part ...
    await wx.settle()
    assert len(wx.pushed("o-long")) == len(parts) - 1  # ... and no second copy of the rest


async def test_the_rest_of_a_long_answer_waits_until_the_first_part_is_sent(wx: Harness) -> None:
    """Tencent shows the passive part only once it has the whole response: a rest pushed at once came first."""
    waits: list[float] = []
    release = asyncio.Event()

    async def held(seconds: float) -> None:
        waits.append(seconds)
        await release.wait()

    wx.app[appkeys.WECHAT].pause = held
    first = await wx.post(long_manual_click(wx, "o-order"))
    assert first.content.startswith("您好") and "第1步" in first.content
    assert wx.pushed("o-order") == []  # the customer has the first part; the rest is still waiting
    release.set()
    await wx.settle()
    assert waits == [REST_DELAY_SECONDS] and REST_DELAY_SECONDS >= 1
    rest = wx.pushed("o-order")
    assert rest and rest[0][0].isdigit() and "第30步" in "".join(rest) and rest[-1].endswith("请问还有什么可以帮您的吗？")


# -- pushes: agents, follow-ups, tokens, the 48-hour window --------------------------------------------

async def log_in(wx: Harness) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base_url=str(wx.client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await session.post("/api/auth/login", json={"username": "wang", "password": "password-1"}, headers=CSRF)
    assert resp.status == 200, await resp.text()
    return session


async def test_agent_reply_from_the_console_reaches_the_wechat_customer(wx: Harness) -> None:
    await create_agent(wx.store, "wang", "password-1", display_name="小王")
    queued = await wx.say("o-agent", "人工", 5001)
    assert "人工客服" in queued.content
    session = await log_in(wx)
    try:
        conv = f"{CHANNEL}:o-agent"
        assert (await session.post(f"/api/console/conversations/{conv}/claim", headers=CSRF)).status == 200
        resp = await session.post(f"/api/console/conversations/{conv}/reply", headers=CSRF,
                                  json={"text": "您好，我是客服小王，请问有什么可以帮您？"})
        assert resp.status == 200, await resp.text()
    finally:
        await session.close()
    pushed = wx.pushed("o-agent")
    assert "小王" in pushed[0]  # the agent-joined notice
    assert pushed[-1] == "您好，我是客服小王，请问有什么可以帮您？"
    sent = wx.fake.messages[-1].body.decode()
    assert "您好" in sent and "\\u" not in sent  # UTF-8 on the wire, not escapes
    # While an agent holds the conversation the bot stays quiet: "success", never an empty XML reply.
    quiet = await wx.say("o-agent", "好的谢谢", 5002)
    assert quiet.body == "success"


async def test_agent_reply_outside_the_48_hour_window_is_kept_and_the_agent_is_told(wx: Harness) -> None:
    await create_agent(wx.store, "wang", "password-1", display_name="小王")
    await wx.say("o-late", "人工", 5101)
    session = await log_in(wx)
    try:
        conv = f"{CHANNEL}:o-late"
        assert (await session.post(f"/api/console/conversations/{conv}/claim", headers=CSRF)).status == 200
        wx.fake.customer_wrote("o-late", at=wx.fake.clock() - 49 * 3600)  # the customer's last word: 49 h ago
        resp = await session.post(f"/api/console/conversations/{conv}/reply", headers=CSRF,
                                  json={"text": "您好，您的退款已经处理好了。"})
        assert resp.status == 200
        assert {"code": "not_delivered", "detail": "outside_48h_window"} in (await resp.json())["warnings"]
    finally:
        await session.close()
    assert "您好，您的退款已经处理好了。" not in wx.pushed("o-late")
    assert [e.data["text"] for e in await wx.events("o-late", "agent_message")] == ["您好，您的退款已经处理好了。"]


async def test_expired_access_token_is_refreshed_once(wx: Harness) -> None:
    delivery = wx.app[appkeys.WECHAT]
    wx.fake.customer_wrote("o-token")
    assert await delivery.deliver("o-token", [Reply("您好，第一条消息。")])
    wx.fake.expire_current_token()
    assert await delivery.deliver("o-token", [Reply("您好，第二条消息。")])
    assert wx.pushed("o-token") == ["您好，第一条消息。", "您好，第二条消息。"]
    assert wx.fake.token_requests == 2 and wx.fake.send_attempts == 3
    # The token lives in the shared store, so another worker would use the same one.
    assert await wx.store.cache_get(f"wechat:access_token:{APP_ID}") is not None


async def test_typing_is_not_sent_and_suggestions_become_lines(wx: Harness) -> None:
    delivery = wx.app[appkeys.WECHAT]
    wx.fake.customer_wrote("o-opts")
    assert await delivery.deliver("o-opts", [Reply("on", kind="typing", sender="agent")])
    assert wx.pushed() == []
    survey = Reply("请您为本次服务打分。", suggestions=(Suggestion("5分 非常满意", "5"), Suggestion("已解决", "已解决")))
    assert await delivery.deliver("o-opts", [survey])
    assert wx.pushed("o-opts") == ["请您为本次服务打分。\n您可以直接回复：\n· 5（5分 非常满意）\n· 已解决"]


async def test_followup_survey_reaches_wechat_and_a_rating_is_understood(wx: Harness) -> None:
    await wx.say("o-survey", "再见", 6001)
    followups = wx.app[appkeys.ENGINE].followups
    [job] = [j for j in await wx.store.jobs(conversation_id=f"{CHANNEL}:o-survey") if j["kind"] == "survey"]
    wx.clock.advance(minutes=wx.settings.followups.survey_delay_minutes + 1)
    assert await followups.run_due() == 1
    [survey] = wx.pushed("o-survey")
    assert "5（5分 非常满意）" in survey and "**" not in survey
    thanks = await wx.say("o-survey", "5", 6002)
    assert thanks.status == 200 and thanks.content
    assert [e.data["score"] for e in await wx.events("o-survey", "rating")] == [5]
    assert (await wx.store.job_get(job["id"]))["status"] == "done"


async def test_followup_after_48_hours_is_not_sent_and_marked(wx: Harness) -> None:
    await wx.say("o-away", "再见", 7001)
    wx.clock.advance(hours=49)
    followups = wx.app[appkeys.ENGINE].followups
    job = await followups.schedule("ticket_update", f"{CHANNEL}:o-away", wx.clock.now(),
                                   data={"ticket_id": "T1", "status": "done"})
    await followups.run_job(job["id"])
    assert (await wx.store.job_get(job["id"]))["status"] == "skipped"
    [skipped] = await wx.events("o-away", "followup_skipped")
    assert skipped.data["reason"] == "outside_48h_window"
    assert wx.pushed() == [] and wx.fake.send_attempts == 0


async def ticket_update_run_now(wx: Harness, openid: str, ticket_id: str) -> dict[str, Any]:
    """A ticket-update follow-up for the customer, due now, run once; the job as stored after the run."""
    followups = wx.app[appkeys.ENGINE].followups
    job = await followups.schedule("ticket_update", f"{CHANNEL}:{openid}", wx.clock.now(),
                                   data={"ticket_id": ticket_id, "status": "done"})
    await followups.run_job(job["id"])
    stored = await wx.store.job_get(job["id"])
    assert stored is not None
    return stored


async def test_wechat_45015_marks_the_followup_undeliverable_instead_of_retrying(wx: Harness) -> None:
    await wx.say("o-closed", "再见", 7101)
    # Our log says the customer wrote recently, but WeChat's window is closed (e.g. it counts differently).
    wx.fake.customer_wrote("o-closed", at=wx.now() - 49 * 3600)
    stored = await ticket_update_run_now(wx, "o-closed", "T2")
    assert stored["status"] == "skipped" and stored["attempts"] == 0
    assert [e.data["reason"] for e in await wx.events("o-closed", "followup_skipped")] == ["outside_48h_window"]
    assert wx.fake.send_attempts == 1 and wx.pushed() == []
    assert await wx.events("o-closed", "followup_sent") == []


async def test_transient_api_failure_leaves_the_followup_for_a_retry(wx: Harness) -> None:
    await wx.say("o-busy", "再见", 7201)
    wx.fake.fail_next(-1, "system busy")
    stored = await ticket_update_run_now(wx, "o-busy", "T3")
    assert stored["status"] == "pending" and stored["attempts"] == 1
    wx.clock.advance(minutes=3)
    assert await wx.app[appkeys.ENGINE].followups.run_due() == 1
    assert len(wx.pushed("o-busy")) == 1


# -- the mapping and the text shaping as properties ------------------------------------------------------

MSG_TYPES = st.sampled_from(["text", "voice", "image", "video", "shortvideo", "location", "link", "file", "event",
                             "miniprogrampage", "x"])
EVENTS = st.sampled_from(["subscribe", "unsubscribe", "click", "view", "scan", "location", "other", None])
TEXT = st.text(max_size=40)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg_type=MSG_TYPES, event=EVENTS, key=st.one_of(st.none(), st.sampled_from(["RETURNS", "HUMAN", "NOPE"])),
       content=st.one_of(st.none(), TEXT), msg_id=st.one_of(st.none(), st.integers(1, 2**63).map(str)),
       create_time=st.integers(0, 2**40))
def test_every_callback_maps_to_one_incoming_message_or_none(clock: FakeClock, msg_type: str, event: str | None,
                                                              key: str | None, content: str | None,
                                                              msg_id: str | None, create_time: int) -> None:
    msg = WechatMessage(ACCOUNT, "o-prop", create_time, msg_type, msg_id=msg_id, content=content,
                        event=event if msg_type == "event" else None, event_key=key)
    incoming = to_incoming(msg, clock.now(), menu={"RETURNS": "zh-returns-7day", "HUMAN": "人工"},
                           faq_question=lambda i: "七天无理由退货怎么申请？" if i == "zh-returns-7day" else None)
    if incoming is None:
        assert msg_type == "event" and event not in ("subscribe", "unsubscribe", "click")
        return
    assert incoming.channel == CHANNEL and incoming.customer_id == "o-prop"
    assert incoming.kind in {"text", "subscribe", "unsubscribe", "menu", "image", "voice", "video", "shortvideo",
                             "location", "link", "file", "unknown"}
    expected_id = msg_id or f"o-prop:{create_time}:{msg.event or msg_type}:{key or ''}"
    assert incoming.channel_msg_id == expected_id
    if msg_type == "text":
        assert incoming.kind == "text" and incoming.text == (content or "")
    if incoming.kind == "menu" and "faq_id" in incoming.meta:
        assert incoming.meta["faq_id"] == "zh-returns-7day"


RENDERER = ReplyRenderer(ROOT / "reply_templates")


@pytest.mark.parametrize(("msg", "kind", "meta"), [
    (WechatMessage(ACCOUNT, "o-m", 1, "event", event="subscribe", event_key="qrscene_42"), "subscribe",
     {"scene": "42"}),
    (WechatMessage(ACCOUNT, "o-m", 1, "event", event="subscribe"), "subscribe", {}),
    (WechatMessage(ACCOUNT, "o-m", 1, "miniprogrampage", msg_id="9"), "unknown", {"msg_type": "miniprogrampage"}),
    (WechatMessage(ACCOUNT, "o-m", 1, "event", event="click", event_key="NOPE"), "menu", {"event_key": "NOPE"}),
])
def test_what_the_bot_does_not_act_on_is_kept_in_meta(clock: FakeClock, msg: WechatMessage, kind: str,
                                                       meta: dict[str, str]) -> None:
    """A QR code's scene, an unknown type, an unconfigured menu key: context an agent needs to make sense of it."""
    incoming = to_incoming(msg, clock.now(), menu={"RETURNS": "zh-returns-7day"}, faq_question=lambda _: None)
    assert incoming is not None and incoming.kind == kind
    assert incoming.meta == {"create_time": 1, **meta}


def test_a_reply_of_characters_xml_cannot_carry_is_no_message() -> None:
    """It would go out as XML with empty Content ("该公众号暂时无法提供服务"); the webhook answers success."""
    assert wechat_texts([Reply("\x01\x02"), Reply("\ufffe ")], RENDERER) == []
    assert wechat_texts([Reply("您好\x00，稍等")], RENDERER) == ["您好，稍等"]


@hsettings(max_examples=150)
@given(st.lists(st.text(alphabet=st.sampled_from("您好退货运费**\n。1. ab💡"), max_size=900), min_size=1, max_size=4))
def test_shaped_texts_fit_wechat_and_keep_every_word(texts: list[str]) -> None:
    parts = wechat_texts([Reply(t) for t in texts], RENDERER)
    assert all(0 < len(p.encode()) <= TEXT_LIMIT_BYTES for p in parts)
    squeeze = "".join("".join(parts).split())
    expected = "".join("".join(wechat_xml.plain_markup(t) for t in texts if t.strip()).split())
    assert squeeze == expected


async def test_context_the_bot_does_not_act_on_is_stored_for_the_agents(wx: Harness) -> None:
    """The QR-code scene of a follow, the real type of an unknown message and the key of an unmapped menu
    click were dropped: an agent could not see where the customer came from or what they pressed."""
    await wx.post(message("o-ctx", "event", Event="subscribe", EventKey="qrscene_42", create_time=wx.now()))
    await wx.post(message("o-ctx", "miniprogrampage", Title="shop", AppId="wx1", MsgId="8801", create_time=wx.now()))
    await wx.post(message("o-ctx", "event", Event="CLICK", EventKey="NOPE", create_time=wx.now() + 1))
    stored = [e.data.get("media") for e in await wx.events("o-ctx", "customer_message")]
    assert stored == [{"scene": "42"}, {"msg_type": "miniprogrampage"}, {"event_key": "NOPE"}]
