"""The in-process event bus of the embedded store (one worker: publish reaches every local subscriber)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot import jsoncodec

Message = tuple[str, dict[str, Any]]


class Subscription:
    """An async iterator of (topic, payload); registered when created, so nothing published after is missed."""

    def __init__(self, queue: asyncio.Queue[Message], on_close: Callable[[asyncio.Queue[Message]], None]) -> None:
        self._queue = queue
        self._on_close = on_close

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self._queue.get()

    def close(self) -> None:
        self._on_close(self._queue)


class LocalBus:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Message]] = set()

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        # A JSON round trip gives subscribers their own copy, as a networked bus would.
        data = jsoncodec.loads(jsoncodec.dumps(payload))
        for queue in self._queues:
            queue.put_nowait((topic, data))

    def subscribe(self) -> Subscription:
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._queues.add(queue)
        return Subscription(queue, self._queues.discard)
