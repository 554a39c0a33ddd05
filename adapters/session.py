"""Login sessions for the console and admin APIs: who is calling, and may they do this."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from bot.auth import Agent, session_agent
from bot.handoff import HandoffError
from bot.storage.base import ConversationStore

COOKIE = "kefu_session"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "kefu"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AgentHandler = Callable[[web.Request, Agent], Awaitable[web.StreamResponse]]


class Sessions:
    def __init__(self, secret: str, store: Callable[[], ConversationStore]) -> None:
        self._secret = secret
        self._store = store

    async def current(self, request: web.Request) -> Agent | None:
        return await session_agent(self._store(), self._secret, request.cookies.get(COOKIE))

    def guard(self, handler: AgentHandler, *, role: str | None = None) -> Handler:
        """401 without a session, 403 for the wrong role or a state change without the CSRF header."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            agent = await self.current(request)
            if agent is None:
                return error(401, "login_required")
            if role is not None and agent.role != role:
                return error(403, "forbidden")
            if request.method != "GET" and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
                return error(403, "csrf_header_missing")
            try:
                return await handler(request, agent)
            except HandoffError as exc:
                return error(exc.status, exc.code)
        return wrapped


def error(http_status: int, code: str, /, **extra: Any) -> web.Response:
    return web.json_response({"error": code, **extra}, status=http_status)


def explained(handler: Handler, strings: Callable[[str], Mapping[str, str]]) -> Handler:
    """Every JSON error also carries "message" in the caller's language.

    Codes stay the contract for code; the message (the page's strings, "err.<code>") is for the person.
    """
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type != "application/json":
                raise
            response = web.Response(status=exc.status, text=exc.text, content_type="application/json")
        if isinstance(response, web.Response) and response.status >= 400 \
                and response.content_type == "application/json" and response.text:
            try:
                body = json.loads(response.text)
            except ValueError:
                return response
            if isinstance(body, dict) and isinstance(body.get("error"), str) and "message" not in body:
                texts = strings(accepted_lang(request))
                text = texts.get(f"err.{body['error']}") or texts.get("err.generic", "{code}")
                body["message"] = text.replace("{code}", body["error"])
                response.text = json.dumps(body, ensure_ascii=False)
        return response
    return wrapped


def accepted_lang(request: web.Request) -> str:
    """zh or en: ?lang= first, else the first language the browser accepts."""
    forced = request.query.get("lang")
    if forced in ("zh", "en"):
        return forced
    first = request.headers.get("Accept-Language", "").split(",")[0].strip().lower()
    return "en" if first.startswith("en") else "zh"


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says the body is not one."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json"}), content_type="application/json") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json"}), content_type="application/json")
    return body
