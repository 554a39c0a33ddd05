"""The HTTP access log: one structured line a request (method, path, status, size, time), never the query
string (WeChat puts the customer's openid and the signature there)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # The fields become JSON keys (bot.logs), so a log pipeline filters on status or time without parsing.
        self.logger.info("%s %s %d", request.method, request.path, response.status, extra={"fields": {
            "remote": request.remote, "method": request.method, "path": request.path, "status": response.status,
            "bytes": response.body_length, "ms": round(time * 1000, 1)}})
