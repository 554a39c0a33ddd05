"""Prometheus metrics for operations: requests, customer messages and their latency, queue, errors.

One registry per application (no process globals), served at /metrics to admins, or on its own port.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.storage.base import ConversationStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    def __init__(self, store: Callable[[], ConversationStore]) -> None:
        self._store = store
        self.registry = CollectorRegistry()
        self._requests = Counter("kefu_http_requests", "HTTP requests by route and status",
                                 ["route", "status"], registry=self.registry)
        self._errors = Counter("kefu_http_errors", "Responses with a 5xx status", ["route"], registry=self.registry)
        self._messages = Counter("kefu_customer_messages", "Customer messages handled", ["channel"],
                                 registry=self.registry)
        self._latency = Histogram("kefu_reply_seconds", "Time from a customer message to the bot's reply",
                                  ["channel"], registry=self.registry,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self._queue = Gauge("kefu_queue_length", "Conversations waiting for an agent", registry=self.registry)

    def observe_message(self, channel: str, seconds: float) -> None:
        self._messages.labels(channel).inc()
        self._latency.labels(channel).observe(seconds)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._requests.labels(route, str(exc.status)).inc()
            raise
        except Exception:
            self._requests.labels(route, "500").inc()
            self._errors.labels(route).inc()
            raise
        self._requests.labels(route, str(response.status)).inc()
        if response.status >= 500:
            self._errors.labels(route).inc()
        return response

    async def exposition(self) -> web.Response:
        self._queue.set(len(await self._store().queue_items()))
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def timer() -> Callable[[], float]:
    """Seconds since the call, for latency observations."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
