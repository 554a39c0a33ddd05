"""Web chat channel: the widget's static files, its config endpoint and the chat WebSocket.

Protocol: docs/webchat-protocol.md. Every frame is JSON; the server sends reply markup as text and the
widget builds DOM with textContent, so nothing from a customer or an agent is ever HTML here.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.metrics import Metrics, timer
from adapters.wsutil import send_json
from bot import jsoncodec
from bot.clock import Clock
from bot.config import Settings
from bot.conversation import conversation_id
from bot.engine import ConversationEngine
from bot.models import IncomingMessage, Reply
from bot.delivery import DELIVER_TOPIC
from bot.storage.base import ConversationStore, StoreError
from bot.tokens import new_id, sign, verify

logger = logging.getLogger(__name__)

CHANNEL = "web"
STATIC_DIR = Path(__file__).resolve().parent / "webchat_static"
MAX_FRAME_BYTES = 64 * 1024  # far above any allowed message; larger frames close the socket (1009)
MAX_CLIENT_ID = 64
HEARTBEAT_SECONDS = 30.0


class WebchatChannel:
    """Open sockets by visitor (several tabs each), and the Outbox that pushes to them."""

    def __init__(self, settings: Settings, engine: Callable[[], ConversationEngine], clock: Clock,
                 store: Callable[[], ConversationStore], *, metrics: Metrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._conf = settings.channels.webchat
        self._engine = engine
        self._store = store
        self._worker = new_id("w_")  # tells this worker's own bus messages apart
        self._elsewhere: set[str] = set()  # visitors with tabs open here and on another worker
        self._clock = clock
        self._monotonic = monotonic
        self._metrics = metrics
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._sent: dict[str, deque[float]] = defaultdict(deque)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.demo_page),
            web.get("/api/webchat/config", self.config),
            web.get("/ws/chat", self.socket),
            web.static("/static/webchat", STATIC_DIR),
        ]

    async def close_all(self, payload: dict[str, Any] | None = None) -> None:
        """Tell every open widget to reconnect (1001 going away): at shutdown, and when the bus lost
        messages (BUS_RESUMED, whose empty payload it takes) — the reconnect's history brings back whatever a
        live push missed."""
        sockets = [ws for group in self._sockets.values() for ws in group]
        for ws in sockets:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"reconnect")

    async def on_deliver(self, payload: dict[str, Any]) -> None:
        """A push from any worker (bus "deliver"): send it if this worker holds the visitor's sockets.

        A payload with "tab" instead says another worker has a tab of the visitor ("opened": just now, and
        asks who else has one; "here": an answer). Workers that both hold one then share the bot's replies."""
        if payload.get("channel") != CHANNEL or payload.get("origin") == self._worker:
            return
        visitor = payload["customer_id"]
        if "tab" in payload:
            if visitor in self._sockets:
                self._elsewhere.add(visitor)
                if payload["tab"] == "opened":
                    await self._publish(visitor, tab="here")
            return
        sockets = list(self._sockets.get(visitor, ()))
        at = self._clock.now().isoformat()
        for raw in payload["replies"]:
            frame = push_frame(Reply.from_dict(raw), at)
            for ws in sockets:
                await send_json(ws, frame)

    async def demo_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "demo.html")

    async def config(self, request: web.Request) -> web.Response:
        lang = _lang(request.query.get("lang"), self._settings.shop.default_lang)
        response = web.json_response({
            "shop_name": self._settings.shop.display_name(lang),
            "lang": lang,
            "strings": self._engine().renderer.strings("widget", lang),
            "max_message_chars": self._conf.max_message_chars,
        })
        # The widget on a shop page of another origin fetches this without credentials: allow exactly the
        # configured origins (never "*"), and tell caches the answer depends on Origin.
        origin = request.headers.get("Origin")
        response.headers["Vary"] = "Origin"
        if origin is not None and origin in self._conf.allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
        return response

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        if not self._origin_allowed(request):
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        visitor: str | None = None
        lang = self._settings.shop.default_lang
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                data = _parse(frame.data)
                if data is None:
                    await self._error(ws, "bad_frame", lang, None)
                    continue
                kind = data.get("type")
                if kind == "hello":
                    lang = _lang(data.get("lang"), lang)
                    if visitor is not None:
                        self._sockets[visitor].discard(ws)
                    visitor = await self._welcome(ws, data.get("token"))
                    if visitor is None:
                        break
                elif kind == "ping":
                    await send_json(ws, {"type": "pong"})
                elif kind == "typing":
                    if visitor is not None and isinstance(data.get("on"), bool):
                        await self._typing(visitor, data["on"])
                elif kind == "message":
                    if visitor is None:
                        await self._error(ws, "not_ready", lang, _client_id(data))
                    else:
                        await self._message(ws, visitor, data, lang)
                else:
                    await self._error(ws, "bad_frame", lang, _client_id(data))
        finally:
            if visitor is not None:
                self._sockets[visitor].discard(ws)
                if not self._sockets[visitor]:
                    del self._sockets[visitor]
                    self._elsewhere.discard(visitor)
        return ws

    async def _welcome(self, ws: web.WebSocketResponse, token: object) -> str | None:
        """Greet a (re)connecting widget with its token and history; None (socket closed) if the store is down."""
        secret = self._settings.secrets.secret_key
        visitor = verify(secret, token)
        returning = visitor is not None
        if visitor is None:
            visitor = new_id("v_")
        try:
            history = await self._engine().transcript(CHANNEL, visitor)
        except StoreError:
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"store unavailable")
            return None
        self._sockets[visitor].add(ws)
        await send_json(ws, {"type": "welcome", "token": sign(secret, visitor), "history": history})
        if returning:  # may have tabs open on other workers
            await self._publish(visitor, tab="opened")
        return visitor

    async def _message(self, ws: web.WebSocketResponse, visitor: str, data: dict[str, Any], lang: str) -> None:
        client_id = _client_id(data)
        text = data.get("text")
        if client_id is None or not isinstance(text, str):
            await self._error(ws, "bad_frame", lang, client_id)
            return
        if len(text) > self._conf.max_message_chars:
            await self._error(ws, "too_large", lang, client_id, limit=self._conf.max_message_chars)
            return
        if not self._within_rate(visitor):
            await self._error(ws, "rate_limited", lang, client_id)
            return
        await send_json(ws, {"type": "typing", "from": "bot", "on": True})
        msg = IncomingMessage(CHANNEL, visitor, text, self._clock.now(), channel_msg_id=client_id)
        elapsed = timer()
        try:
            outcome = await self._engine().receive(msg)
        except StoreError:
            # Not acked, so the widget keeps the message and sends it again after reconnecting.
            logger.warning("store unavailable: asking a web-chat client to reconnect")
            await self._error(ws, "unavailable", lang, client_id)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"store unavailable")
            return
        if self._metrics is not None:
            self._metrics.observe_message(CHANNEL, elapsed())
        # The ack follows the store write inside receive(): an acked message is never lost.
        await send_json(ws, {"type": "ack", "id": client_id, "duplicate": outcome.duplicate})
        if not outcome.duplicate:
            at = self._clock.now().isoformat()
            for other in list(self._sockets.get(visitor, ())):
                for reply in outcome.replies:
                    await send_json(other, reply_frame(reply, at, reply_to=client_id))
            await self._to_other_workers(visitor, outcome.replies)
        await send_json(ws, {"type": "typing", "from": "bot", "on": False})

    async def _to_other_workers(self, visitor: str, replies: list[Reply]) -> None:
        """The visitor's tabs open on other workers get the bot's replies too (through the shared bus); only
        for visitors known to have one, so that the bus does not carry every reply to every worker."""
        if visitor in self._elsewhere and replies:
            await self._publish(visitor, replies=[r.to_dict() for r in replies])

    async def _publish(self, visitor: str, **fields: Any) -> None:
        store = self._store()
        if not store.shared:
            return
        try:
            await store.publish(DELIVER_TOPIC, {"channel": CHANNEL, "customer_id": visitor, "origin": self._worker,
                                                **fields})
        except StoreError:
            logger.info("store unavailable: the visitor's other tabs catch up when they reconnect")

    async def _typing(self, visitor: str, on: bool) -> None:
        """The customer's typing, for an agent holding (or looking at a queued) conversation; never an error."""
        try:
            await self._engine().desk.customer_typing(conversation_id(CHANNEL, visitor), on)
        except StoreError:
            logger.info("store unavailable: customer typing not forwarded")

    async def _error(self, ws: web.WebSocketResponse, code: str, lang: str, client_id: str | None,
                     **context: Any) -> None:
        message = self._engine().renderer.render(f"webchat_{code}", lang, **context)
        await send_json(ws, {"type": "error", "code": code, "message": message, "id": client_id})

    def _within_rate(self, visitor: str) -> bool:
        now = self._monotonic()
        window = self._sent[visitor]
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self._conf.rate_limit_per_minute:
            return False
        window.append(now)
        return True

    def _origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: browsers always send Origin on a WebSocket handshake
            return True
        own = f"{request.scheme}://{request.host}"
        return origin == own or origin in self._conf.allowed_origins


def push_frame(reply: Reply, at: str) -> dict[str, Any]:
    """Frames for pushed replies: agent typing, queue notices, or a message."""
    if reply.kind == "typing":
        return {"type": "typing", "from": reply.sender, "on": reply.text == "on"}
    if reply.kind == "notice":
        return {"type": "notice", "text": reply.text, "at": at}
    return reply_frame(reply, at)


def reply_frame(reply: Reply, at: str, *, reply_to: str | None = None) -> dict[str, Any]:
    return {
        "type": "reply",
        "id": new_id("r_"),
        "reply_to": reply_to,
        "from": reply.sender,
        "text": reply.text,
        "at": at,
        "suggestions": [s.to_dict() for s in reply.suggestions],
    }



def _parse(raw: str) -> dict[str, Any] | None:
    try:
        data = jsoncodec.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("type"), str) else None


def _client_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    if isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID:
        return value
    return None


def _lang(value: object, default: str) -> str:
    return value if value in ("zh", "en") else default
