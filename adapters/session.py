"""Login sessions for the console and admin APIs: who is calling, and may they do this."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
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


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says the body is not one."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json"}), content_type="application/json") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_json"}), content_type="application/json")
    return body
