"""Agent console: login, the console page, its JSON API and live WebSocket (docs/console-api.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.session import COOKIE, CSRF_HEADER, CSRF_VALUE, Sessions, error, explained, json_body
from adapters.wsutil import send_json
from bot.auth import Agent, AuthError, list_agents, login, logout, session_agent, update_agent
from bot.config import Settings
from bot.engine import ConversationEngine
from bot.handoff import HandoffDesk
from bot.knowledge import to_record
from bot.norms import check, check_answer
from bot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "console_static"
MAX_TEXT = 4000
CANNED_TEMPLATES = ("greeting", "agitated", "thanks", "goodbye", "fallback", "wait_update")
# A console socket whose session ended (logout, expiry, disabled account) is closed with this application
# code (4000-4999 are free for applications); console.js shows "logged out, please log in again" for it.
LOGGED_OUT = 4001

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Console:
    """One open console socket: whose session it belongs to and what it watches."""

    agent: Agent
    token: str
    watched: set[str] = field(default_factory=set)


class ConsoleChannel:
    def __init__(self, settings: Settings, store: Callable[[], ConversationStore],
                 engine: Callable[[], ConversationEngine]) -> None:
        self._settings = settings
        self._store = store
        self._engine = engine
        self._sockets: dict[web.WebSocketResponse, _Console] = {}
        self._sessions = Sessions(settings.secrets.secret_key, store)

    @property
    def _secret(self) -> str:
        return self._settings.secrets.secret_key

    @property
    def _desk(self) -> HandoffDesk:
        return self._engine().desk

    def routes(self) -> list[web.AbstractRouteDef]:
        conv = "/api/console/conversations/{id}"

        def api(handler: Any) -> Handler:
            return explained(self._sessions.guard(handler), self._console_strings)

        return [
            web.get("/console", self.page),
            web.static("/static/console", STATIC_DIR),
            web.post("/api/auth/login", explained(self.login, self._console_strings)),
            web.post("/api/auth/logout", explained(self.logout, self._console_strings)),
            web.get("/api/auth/me", api(self.me)),
            web.get("/api/console/strings", self.strings),
            web.get("/api/console/queue", api(self.queue)),
            web.get("/api/console/conversations", api(self.mine)),
            web.get(conv, api(self.detail)),
            web.post(conv + "/claim", api(self.claim)),
            web.post(conv + "/reply", api(self.reply)),
            web.post(conv + "/note", api(self.note)),
            web.post(conv + "/transfer", api(self.transfer)),
            web.post(conv + "/release", api(self.release)),
            web.post(conv + "/close", api(self.close)),
            web.post(conv + "/typing", api(self.typing)),
            web.post("/api/console/status", api(self.status)),
            web.get("/api/console/agents", api(self.agents)),
            web.get("/api/console/canned", api(self.canned)),
            web.post("/api/console/check", api(self.check)),
            web.get("/ws/console", self.socket),
        ]

    def _console_strings(self, lang: str) -> dict[str, str]:
        return self._engine().renderer.strings("console", lang)

    # -- auth ---------------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        if request.headers.get(CSRF_HEADER) != CSRF_VALUE:
            return error(403, "csrf_header_missing")
        body = await json_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > 1024:
            return error(400, "bad_request")
        try:
            agent, token = await login(self._store(), self._secret, username.strip().lower(), password)
        except AuthError as exc:
            if str(exc) == "too_many_attempts":
                return web.json_response({"error": "too_many_attempts", "retry_after": 900}, status=429)
            return error(401, "invalid_credentials")
        response = web.json_response(agent.public())
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                            secure=request.secure, max_age=12 * 3600)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        token = request.cookies.get(COOKIE)
        await logout(self._store(), self._secret, token)
        # The session's other tabs on this worker go at once; those on other workers at their next push or
        # ping, when _signed_in finds the session gone.
        if token:
            await self._cut_off([ws for ws, c in self._sockets.items() if c.token == token])
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path="/")
        return response

    async def me(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response(agent.public())

    # -- pages and strings -------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "console.html")

    async def strings(self, request: web.Request) -> web.Response:
        return web.json_response(self._console_strings(_lang(request.query.get("lang"))))

    # -- queue and conversations -------------------------------------------------------------------

    async def queue(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response({"items": await self._desk.queue()})

    async def mine(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response({"items": await self._desk.conversations_of(agent)})

    async def detail(self, request: web.Request, agent: Agent) -> web.Response:
        notes_private = self._settings.handoff.notes_private
        return web.json_response(await self._desk.detail(request.match_info["id"], agent,
                                                         notes_private=notes_private))

    async def claim(self, request: web.Request, agent: Agent) -> web.Response:
        await self._desk.claim(request.match_info["id"], agent)
        return web.json_response({"ok": True})

    async def reply(self, request: web.Request, agent: Agent) -> web.Response:
        text = _text(await json_body(request))
        warnings = await self._desk.reply(request.match_info["id"], agent, text)
        return web.json_response({"warnings": [{"code": v.code, "detail": v.detail} for v in warnings]})

    async def note(self, request: web.Request, agent: Agent) -> web.Response:
        await self._desk.note(request.match_info["id"], agent, _text(await json_body(request)))
        return web.json_response({"ok": True})

    async def transfer(self, request: web.Request, agent: Agent) -> web.Response:
        to = (await json_body(request)).get("to")
        if not isinstance(to, str):
            return error(400, "bad_request")
        await self._desk.transfer(request.match_info["id"], agent, to)
        return web.json_response({"ok": True})

    async def release(self, request: web.Request, agent: Agent) -> web.Response:
        await self._desk.release(request.match_info["id"], agent)
        return web.json_response({"ok": True})

    async def close(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        resolved, category = body.get("resolved"), body.get("category")
        if not isinstance(resolved, bool) or not (category is None or isinstance(category, str)):
            return error(400, "bad_request")
        await self._desk.close(request.match_info["id"], agent, resolved=resolved, category=category)
        return web.json_response({"ok": True})

    async def typing(self, request: web.Request, agent: Agent) -> web.Response:
        on = (await json_body(request)).get("on")
        if not isinstance(on, bool):
            return error(400, "bad_request")
        await self._desk.typing(request.match_info["id"], agent, on)
        return web.Response(status=204)

    async def status(self, request: web.Request, agent: Agent) -> web.Response:
        status = (await json_body(request)).get("status")
        if status not in ("online", "away"):
            return error(400, "bad_request")
        updated = await update_agent(self._store(), agent.username, status=status)
        return web.json_response(updated.public())

    async def agents(self, request: web.Request, agent: Agent) -> web.Response:
        items = [{**a.public(), "active": not a.disabled} for a in await list_agents(self._store())]
        return web.json_response({"items": items})

    async def canned(self, request: web.Request, agent: Agent) -> web.Response:
        lang = _lang(request.query.get("lang"))
        query = request.query.get("q", "").strip()[:200]
        engine = self._engine()
        items: list[dict[str, Any]] = []
        for name in CANNED_TEMPLATES:
            context = engine.renderer.sample_context(name, lang)
            items.append({"title": name, "text": engine.renderer.render(name, lang, **context),
                          "source": "template", "id": name})
        if query:
            for candidate in engine.matcher.rank(query, lang=lang, k=5):
                entry = engine.entry(candidate.entry_id)
                if entry is not None:
                    record = to_record(entry)
                    items.append({"title": record["question"], "text": record["answer"], "source": "faq",
                                  "id": entry.id})
            items = [i for i in items if i["source"] == "faq" or query in i["text"]]
        return web.json_response({"items": items})

    async def check(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        lang = _lang(body.get("lang"))
        text = body.get("text")
        if not isinstance(text, str) or len(text) > MAX_TEXT or body.get("kind", "reply") not in ("reply", "answer"):
            return error(400, "bad_request")
        if body.get("kind") == "answer":  # the admin's FAQ editor: the answer as the bot will wrap it
            close = self._engine().renderer.answer_close(lang)
            found = check_answer(text, lang, close=close)
            return web.json_response({"warnings": [{"code": v.code, "detail": v.detail} for v in found],
                                      "close": close})
        warnings = [v for v in check(text, lang) if v.code != "no_courtesy" or len(text) > 30] if text else []
        return web.json_response({"warnings": [{"code": v.code, "detail": v.detail} for v in warnings]})

    # -- live updates ------------------------------------------------------------------------------

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        agent = await self._sessions.current(request)
        if agent is None:
            raise web.HTTPUnauthorized(text="login required")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text="origin not allowed")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=16 * 1024)
        await ws.prepare(request)
        self._sockets[ws] = _Console(agent, request.cookies.get(COOKIE, ""))
        try:
            await send_json(ws, {"type": "queue", "items": await self._desk.queue()})
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(frame.data)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                if data.get("type") == "ping":
                    # The console pings every 25 s: a session that expired or an account disabled while
                    # nothing was pushed is noticed here.
                    if await self._signed_in([ws]):
                        await send_json(ws, {"type": "pong"})
                elif data.get("type") == "watch" and isinstance(data.get("conversation_id"), str) \
                        and ws in self._sockets:
                    self._sockets[ws].watched.add(data["conversation_id"])
        finally:
            self._sockets.pop(ws, None)
        return ws

    async def on_bus(self, payload: dict[str, Any]) -> None:
        """A console event from any worker: forward it to the consoles this worker holds that need it."""
        if not self._sockets:
            return
        kind = payload.get("kind")
        conv = payload.get("conversation_id")
        if kind == "queue":
            frame: dict[str, Any] = {"type": "queue", "items": await self._desk.queue()}
            targets = list(self._sockets)
        elif kind == "message" and isinstance(conv, str):
            frame = {"type": "message", "conversation_id": conv, "item": payload["item"]}
            targets = self._watching(conv)
            if payload["item"].get("note") and self._settings.handoff.notes_private:
                author = payload["item"].get("agent")
                targets = [ws for ws in targets if self._sockets[ws].agent.username == author
                           or self._sockets[ws].agent.role == "admin"]
        elif kind == "conversation":
            frame = {"type": "conversation", **{k: v for k, v in payload.items() if k != "kind"}}
            targets = list(self._sockets)
        elif kind == "typing" and isinstance(conv, str):
            # Only consoles that have the conversation open or hold it: typing is noise to everyone else.
            frame = {"type": "typing", "conversation_id": conv, "from": payload.get("from", "customer"),
                     "on": bool(payload.get("on"))}
            targets = self._watching(conv)
        elif kind == "alert":
            # Bus payloads name the alert in "alert" ("kind" routes the bus message); frames call it "kind".
            # Supervisors (admins) see every alert; an agent sees those about a conversation they hold.
            frame = {"type": "alert", "kind": payload.get("alert"), "conversation_id": conv,
                     **{k: v for k, v in payload.items() if k in ("minutes", "ticket_id")}}
            holder = await self._desk.holder(conv) if isinstance(conv, str) else None
            targets = [ws for ws, c in self._sockets.items()
                       if c.agent.role == "admin" or (holder is not None and c.agent.username == holder)]
        else:
            return
        for ws in await self._signed_in(targets):
            await send_json(ws, frame)

    def _watching(self, conversation_id: str) -> list[web.WebSocketResponse]:
        return [ws for ws, c in self._sockets.items() if conversation_id in c.watched]

    async def _signed_in(self, targets: list[web.WebSocketResponse]) -> list[web.WebSocketResponse]:
        """The targets whose session is still valid; the others are cut off.

        A socket is authorised at connect, so every push re-checks the session (once per session): after
        a logout on another worker, an expiry or a disabled account no customer data reaches that screen.
        """
        valid: dict[str, Agent | None] = {}
        for ws in targets:
            console = self._sockets.get(ws)
            if console is not None and console.token not in valid:
                valid[console.token] = await session_agent(self._store(), self._secret, console.token)
        live, ended = [], []
        for ws in targets:
            console = self._sockets.get(ws)
            if console is None:
                continue
            agent = valid[console.token]
            if agent is None:
                ended.append(ws)
            else:
                console.agent = agent  # a changed role or name counts from now
                live.append(ws)
        await self._cut_off(ended)
        return live

    async def _cut_off(self, sockets: list[web.WebSocketResponse]) -> None:
        for ws in sockets:
            self._sockets.pop(ws, None)
            await ws.close(code=LOGGED_OUT, message=b"logged_out")

    async def close_all(self, payload: dict[str, Any] | None = None) -> None:
        """Consoles reconnect and reload the queue: at shutdown, and when the bus lost messages (BUS_RESUMED,
        whose empty payload it takes)."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"reconnect")



def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_text"}), content_type="application/json")
    return text


def _lang(value: object) -> str:
    return value if isinstance(value, str) and value in ("zh", "en") else "zh"
