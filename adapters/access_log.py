"""The HTTP access log, when a shop turns it on: method, path, status, size and time, never the query string
(WeChat puts the customer's openid and the signature there)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %d %d %.4fs', request.remote, request.method, request.path, response.status,
                         response.body_length, time)
