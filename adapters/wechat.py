"""WeChat Official Account channel: the callback webhook (passive replies) and the push Outbox.

Inbound: authenticate (signature, bounded timestamp skew, msg_signature in safe mode) before reading the
body, parse with wechat_xml (DTDs refused), map to an IncomingMessage and ask the engine. An answer
ready within `reply_deadline_seconds` goes back passively (encrypted when the request was); a later one
is answered `success` and pushed through the customer-service API (wechat_api) once the engine is done.
Tencent retries an unanswered callback with the same MsgId; the engine processes it once, and a
per-message delivery claim in the store makes sure the customer never gets the answer both ways.
Protocol traps we guard against: shared/wechat-notes.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from adapters.wechat_api import OUTSIDE_WINDOW, TRANSPORT_ERROR, SendResult, WechatApi
from adapters.wechat_crypto import WechatCrypto, WechatCryptoError, WechatSignatureError
from adapters.wechat_xml import (
    WechatMessage,
    WechatXmlError,
    build_text_reply,
    check_signature,
    dedup_key,
    extract_encrypted,
    parse_message,
    plain_markup,
    split_text,
    xml_text,
)
from bot.clock import Clock
from bot.config import Settings
from bot.engine import ConversationEngine
from bot.models import IncomingMessage, Reply
from bot.outbox import Undeliverable
from bot.privacy import mask_id
from bot.replies import ReplyRenderer
from bot.storage.base import ConversationStore, StoreError

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
MAX_SKEW_SECONDS = 600  # a captured signed URL is replayable for this long at most
SHUTDOWN_GRACE_SECONDS = 5.0  # late answers still being pushed get this long at shutdown, then are cancelled
PUSH_RETRY_SECONDS = (1.0, 4.0, 15.0)  # pauses before trying a late answer again while WeChat is busy
# After the passive first part of a long answer is written: Tencent relays it to the customer only once it
# has the whole response, so the pushed rest, sent at once, often arrived first.
REST_DELAY_SECONDS = 1.0
SUCCESS = "success"  # "received, nothing to say": WeChat shows the customer nothing and does not retry
MEDIA_KINDS = frozenset({"image", "voice", "video", "shortvideo", "location", "link", "file"})
# Errors after which a push cannot succeed until the customer writes (or follows) again.
UNREACHABLE = {OUTSIDE_WINDOW: "outside_48h_window", 43004: "unsubscribed", 40003: "invalid_openid"}
_PASSIVE, _PUSH = "passive", "push"


def to_incoming(msg: WechatMessage, at: datetime, *, menu: Mapping[str, str],
                faq_question: Callable[[str], str | None]) -> IncomingMessage | None:
    """The core's view of one callback; None for events that are not the customer speaking (VIEW, SCAN…).

    Menu CLICK keys go through `[channels.wechat] menu`: a value naming a FAQ entry answers that entry,
    any other value is taken as if the customer had typed it (e.g. "人工"). An unknown MsgType keeps its
    kind as "unknown" and gets the polite acknowledgement, never an error.
    What the bot does not act on goes in `meta` for the agents: a subscribe's QR `scene`, an unknown type's
    `msg_type`, an unconfigured menu key's `event_key`.
    """
    key = dedup_key(msg)  # MsgId, or sender + CreateTime + event for events (they carry no MsgId)

    def incoming(kind: str, text: str = "", **meta: Any) -> IncomingMessage:
        meta = {k: v for k, v in meta.items() if v is not None}
        return IncomingMessage(CHANNEL, msg.from_user, text, at, kind=kind, channel_msg_id=key,
                               meta={"create_time": msg.create_time, **meta})

    raw = msg.raw
    if msg.msg_type == "text":
        return incoming("text", msg.content or "")
    if msg.msg_type == "voice" and msg.content:  # speech recognition is on: the words are the message
        return incoming("text", msg.content, voice=True, media_id=msg.media_id)
    if msg.msg_type == "event":
        if msg.event == "subscribe":  # by a parametric QR code: EventKey is qrscene_ + the code's scene
            return incoming("subscribe", scene=(msg.event_key or "").removeprefix("qrscene_") or None)
        if msg.event == "unsubscribe":
            return incoming("unsubscribe")
        if msg.event == "click":
            target = menu.get(msg.event_key or "")
            if target is None:
                logger.warning("wechat menu key %r is not in [channels.wechat] menu", msg.event_key)
                return incoming("menu", event_key=msg.event_key)
            question = faq_question(target)
            if question is not None:
                return incoming("menu", question, faq_id=target, event_key=msg.event_key)
            return incoming("text", target, event_key=msg.event_key)
        return None
    if msg.msg_type in MEDIA_KINDS:
        # Text stays empty: a URL or an English link title would make the engine answer in English.
        return incoming(msg.msg_type, media_id=msg.media_id, pic_url=raw.get("PicUrl") or None,
                        url=raw.get("Url") or None, title=raw.get("Title") or None,
                        label=raw.get("Label") or None, latitude=raw.get("Location_X") or None,
                        longitude=raw.get("Location_Y") or None)
    return incoming("unknown", msg_type=msg.msg_type)


def wechat_texts(replies: Sequence[Reply], renderer: ReplyRenderer) -> list[str]:
    """Replies as WeChat text messages: markup made plain (【key facts】), options as lines, split under the
    length limit. Several replies of one turn share messages, so the passive reply carries as much as it can.
    Characters XML cannot carry are dropped: a reply of nothing else is no message (`success`), never an
    XML reply with empty Content."""
    parts: list[str] = []
    for reply in replies:
        if reply.kind == "typing" or not xml_text(reply.text).strip():
            continue
        text = plain_markup(reply.text)
        # Options the text does not already list (clarify numbers its questions itself) become plain lines.
        options = [s.to_dict() for s in reply.suggestions if s.label not in text]
        if options:
            text += "\n" + renderer.render("wechat_options", reply.lang, options=options)
        parts.append(text)
    return split_text(xml_text("\n\n".join(parts))) if parts else []


def unix_clock(clock: Clock) -> Callable[[], float]:
    """Unix seconds from the injected clock, for the API's token expiry."""
    def now() -> float:
        return clock.now().timestamp()
    return now


class WechatChannel:
    """The webhook routes, the background pushes they start, and the Outbox for channel "wechat"."""

    def __init__(self, settings: Settings, *, store: Callable[[], ConversationStore],
                 engine: Callable[[], ConversationEngine], api: Callable[[], WechatApi], clock: Clock) -> None:
        self._conf = settings.channels.wechat
        self._token = settings.secrets.wechat_token
        self._store = store
        self._engine = engine
        self._api = api
        self._clock = clock
        self._claim_ttl = float(settings.store.dedup_ttl_seconds)
        self._crypto = (WechatCrypto(self._token, settings.secrets.wechat_encoding_aes_key, self._conf.app_id)
                        if self._conf.mode != "plain" else None)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.retry_pauses: tuple[float, ...] = PUSH_RETRY_SECONDS
        self.pause: Callable[[float], Awaitable[None]] = asyncio.sleep  # every wait before a push; tests hold it

    def routes(self) -> list[web.AbstractRouteDef]:
        """GET for the console's URL check and POST for callbacks, both at `[channels.wechat] path`."""
        return [web.get(self._conf.path, self.verify_url), web.post(self._conf.path, self.callback)]

    # -- inbound ------------------------------------------------------------------------------------

    async def verify_url(self, request: web.Request) -> web.Response:
        """The console's "submit URL" check: echo echostr when the signature is ours."""
        self._authenticate(request)
        echostr = request.query.get("echostr")
        if not echostr:
            raise web.HTTPBadRequest(text="echostr missing")
        return web.Response(text=echostr)

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """One message or event. 4xx for anything not from WeChat or not well formed; 503 only for a store outage."""
        self._authenticate(request)
        encrypt_type = request.query.get("encrypt_type", "raw").lower()
        if encrypt_type not in ("raw", "aes"):
            raise web.HTTPBadRequest(text="unknown encrypt_type")
        encrypted = encrypt_type == "aes"
        # Safe mode accepts only encrypted bodies: the plain signature does not cover the body (notes §6).
        if self._conf.mode == "safe" and not encrypted:
            raise web.HTTPForbidden(text="safe mode: plaintext callbacks refused")
        body = await request.read()  # 413 past [server] max_body_bytes (client_max_size), even when chunked
        msg = self._parse(body, request.query, encrypted)
        if msg.to_user != self._conf.account_id:
            raise web.HTTPBadRequest(text="addressed to another account")
        incoming = to_incoming(msg, self._clock.now(), menu=self._conf.menu, faq_question=self._faq_question)
        if incoming is None:
            return _success()
        return await self._answer(request, msg, incoming, encrypted)

    def _authenticate(self, request: web.Request) -> None:
        """Signature and freshness from the query string alone, before the body is read."""
        q = request.query
        signature, timestamp, nonce = q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        if not (signature and nonce and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise web.HTTPForbidden(text="signature, timestamp and nonce required")
        if abs(self._clock.now().timestamp() - int(timestamp)) > MAX_SKEW_SECONDS:
            raise web.HTTPForbidden(text="stale timestamp")
        if not check_signature(self._token, signature, timestamp, nonce):
            raise web.HTTPForbidden(text="bad signature")

    def _parse(self, body: bytes, query: Mapping[str, str], encrypted: bool) -> WechatMessage:
        try:
            if encrypted:
                if self._crypto is None:
                    raise web.HTTPBadRequest(text="plain mode: no EncodingAESKey configured")
                _, encrypt = extract_encrypted(body)
                body = self._crypto.verify_and_decrypt(query.get("msg_signature", ""), query["timestamp"],
                                                       query["nonce"], encrypt)
            return parse_message(body)  # the decrypted payload is parsed as warily as a plain one
        except WechatSignatureError:
            raise web.HTTPForbidden(text="bad msg_signature") from None
        except (WechatXmlError, WechatCryptoError) as exc:
            logger.info("wechat callback refused: %s", exc)
            raise web.HTTPBadRequest(text="malformed callback") from None

    def _faq_question(self, entry_id: str) -> str | None:
        entry = self._engine().entry(entry_id)
        return entry.question if entry is not None else None

    async def _answer(self, request: web.Request, msg: WechatMessage, incoming: IncomingMessage,
                      encrypted: bool) -> web.Response:
        """Run the engine under the deadline; whatever it has not finished by then goes out by API."""
        task = self._spawn(self._engine().receive(incoming))
        # The deadline ends our wait, never the engine's work on a message it has claimed (wait cancels nothing).
        if not (await asyncio.wait((task,), timeout=self._conf.reply_deadline_seconds))[0]:
            logger.info("wechat answer for %s not ready in %.1f s: answering by API",
                        mask_id(msg.from_user), self._conf.reply_deadline_seconds)
            self._spawn(self._push_when_done(task, incoming))
            return _success()
        try:
            outcome = task.result()
        except StoreError:
            raise  # → 503: Tencent retries, and the engine released its claim on the message
        except Exception:
            logger.exception("wechat message from %s failed", mask_id(msg.from_user))
            return _success()
        texts = wechat_texts(outcome.replies, self._engine().renderer)
        key = _claim_key(incoming)
        # Only a retry can meet an answer already sent by API; the first, answered in time, needs no claim.
        if not texts or (outcome.duplicate and not await self._may_answer_passively(key)):
            return _success()
        response = self._passive(msg, texts[0], encrypted)
        if len(texts) > 1 and await self._store().cache_add(f"{key}:rest", "1", self._claim_ttl):
            try:  # the first part goes out before the rest is even started
                await response.prepare(request)
                await response.write_eof()
            finally:  # a lost response is retried by Tencent, but the rest is claimed: it must go now
                self._spawn(self._push_rest(incoming.customer_id, texts[1:]))
        return response

    async def _may_answer_passively(self, key: str) -> bool:
        """False when the owner of this message already sends its answer by API (a retry must not double it)."""
        store = self._store()
        if await store.cache_add(key, _PASSIVE, self._claim_ttl):
            return True
        return await store.cache_get(key) == _PASSIVE

    async def _push_when_done(self, task: asyncio.Task[Any], incoming: IncomingMessage) -> None:
        """The slow path: wait for the engine, then push its answer, unless a retry already answered it."""
        try:
            outcome = await task
        except Exception:
            logger.exception("wechat message from %s failed after the reply deadline",
                             mask_id(incoming.customer_id))
            return
        if outcome.duplicate:
            return  # the request that processed the message owns its delivery
        texts = wechat_texts(outcome.replies, self._engine().renderer)
        key = _claim_key(incoming)
        if not texts or not await self._store().cache_add(key, _PUSH, self._claim_ttl):
            return  # a retry got the finished answer in time and replied passively
        await self._push_answer(incoming.customer_id, texts)

    async def _push_rest(self, openid: str, texts: Sequence[str]) -> None:
        """The parts of a long answer after the passive first one, once the customer can have seen that."""
        await self.pause(REST_DELAY_SECONDS)
        await self._push_answer(openid, texts)

    async def _push_answer(self, openid: str, texts: Sequence[str]) -> None:
        """Push the bot's answer nobody else will send; when WeChat keeps refusing it, say so in the
        conversation for the agents (the customer's question would otherwise look answered)."""
        result = await self._push(openid, texts, retry=True)
        if not result.ok:
            try:
                await self._engine().record_undelivered(CHANNEL, openid, errcode=result.errcode,
                                                        errmsg=result.errmsg)
            except StoreError:
                logger.warning("wechat answer to %s undelivered and not recorded: store unavailable",
                               mask_id(openid))

    def _passive(self, msg: WechatMessage, text: str, encrypted: bool) -> web.Response:
        now = int(self._clock.now().timestamp())
        # Addressing swapped: to the customer, from the account's gh_ id (notes §3).
        xml = build_text_reply(msg.from_user, msg.to_user, text, now)
        if encrypted and self._crypto is not None:  # only set then: _parse refused encryption without a key
            xml = self._crypto.encrypt_reply(xml, str(now), str(secrets.randbelow(10**10)))
        return web.Response(text=xml, content_type="application/xml", charset="utf-8")

    # -- outbound -----------------------------------------------------------------------------------

    async def deliver(self, customer_id: str, replies: Sequence[Reply]) -> bool:
        """Outbox for channel "wechat": agent replies, notices and follow-ups through the customer-service API."""
        texts = wechat_texts(replies, self._engine().renderer)
        if not texts:
            return True  # typing indicators: nothing to send on WeChat
        result = await self._push(customer_id, texts)
        if result.errcode in UNREACHABLE:
            raise Undeliverable(UNREACHABLE[result.errcode])
        return result.ok

    async def _push(self, openid: str, texts: Sequence[str], *, retry: bool = False) -> SendResult:
        """Send texts in order; stop at the first failure (the rest would arrive out of context).

        With `retry` (an answer nobody else will send: the customer's question was already acknowledged),
        a passing failure (system busy, network) is tried again after a pause, from the part that failed."""
        result = SendResult(True)
        for index, text in enumerate(texts):
            for pause in (*(self.retry_pauses if retry else ()), None):
                result = await self._api().send_text(openid, text)
                if result.ok or result.errcode != TRANSPORT_ERROR or pause is None:
                    break
                await self.pause(pause)
            if not result.ok:
                logger.warning("wechat push to %s stopped at part %d of %d: errcode %s",
                               mask_id(openid), index + 1, len(texts), result.errcode)
                break
        return result

    # -- background tasks ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the engine runs and pushes still in flight; cancel whatever outlasts `timeout`."""
        while self._tasks:
            pending = set(self._tasks)
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if late:
                logger.warning("wechat: %d background tasks cancelled at shutdown", len(late))

    async def close(self) -> None:
        """At shutdown, before the HTTP session and the store close: let late answers reach the customer."""
        await self.drain(SHUTDOWN_GRACE_SECONDS)


def _claim_key(incoming: IncomingMessage) -> str:
    return f"wechat:delivery:{incoming.customer_id}:{incoming.channel_msg_id}"


def _success() -> web.Response:
    return web.Response(text=SUCCESS, content_type="text/plain")
